"""Small readers and field checks shared by the source loaders.

Every failure is a :class:`DataError` naming the file, the line or row, and the field, so that
``nl2code data stats`` can print it as one line.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any

from nl2code.data.records import DataError


class SourceError(ValueError):
    """Bad use of a source (unknown name or option, bad option value, missing PATH): a usage error."""


_TYPE_NAMES = {str: "string", int: "integer", float: "number", list: "list", dict: "object", bool: "boolean"}


def type_name(value: Any) -> str:
    """JSON-ish name of a value's type, for error messages."""
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def require_file(path: Path) -> Path:
    """Return ``path`` if it is an existing file, else raise DataError."""
    if not path.exists():
        raise DataError(str(path), None, None, "no such file")
    if not path.is_file():
        raise DataError(str(path), None, None, "not a file")
    return path


def read_text(path: Path) -> str:
    """Read a UTF-8 text file (``.gz`` transparently); undecodable bytes are a DataError."""
    require_file(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(str(path), None, None, f"not a valid gzip file ({e})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(str(path), line, None, f"invalid UTF-8 at byte {e.start}") from None


def read_json(path: Path) -> Any:
    """Parse a whole-file JSON document."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(str(path), e.lineno, None, f"invalid JSON: {e.msg} (column {e.colno})") from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON-lines file (``.gz`` ok).

    Blank lines are not rows (a trailing newline is common), so they are skipped, not counted.
    """
    for lineno, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(str(path), lineno, None, f"invalid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(str(path), lineno, None, f"expected a JSON object, got {type_name(obj)}")
        yield lineno, obj


def get_field(
    row: dict[str, Any],
    name: str,
    types: type | tuple[type, ...],
    path: Path,
    where: str | int,
    *,
    nullable: bool = False,
) -> Any:
    """Return ``row[name]`` after checking it exists and has one of ``types``.

    ``bool`` is never accepted where ``int`` is asked for (JSON ``true`` is not a task id).
    """
    if name not in row:
        raise DataError(str(path), where, name, "missing")
    value = row[name]
    if value is None and nullable:
        return None
    allowed = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        wanted = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in allowed)
        raise DataError(str(path), where, name, f"expected {wanted}, got {type_name(value)}")
    return value


def get_str_list(row: dict[str, Any], name: str, path: Path, where: str | int) -> list[str]:
    """Return ``row[name]`` checked to be a list of strings."""
    value = get_field(row, name, list, path, where)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise DataError(str(path), where, f"{name}[{i}]", f"expected string, got {type_name(item)}")
    return value


def unique_ids(prefix: str, ids: Sequence[Hashable]) -> list[str]:
    """Build task ids ``prefix/ID``; an ID seen more than once becomes ``prefix/ID-k`` (k = 0, 1, ...).

    ``k`` counts the occurrences of that ID in the given order (file order), so ids are stable for a
    given file. CoNaLa and CodeFusion-Python reuse one Stack Overflow question id for several rows.
    """
    totals = Counter(ids)
    seen: Counter = Counter()
    out = []
    for raw in ids:
        if totals[raw] == 1:
            out.append(f"{prefix}/{raw}")
        else:
            out.append(f"{prefix}/{raw}-{seen[raw]}")
            seen[raw] += 1
    return out
