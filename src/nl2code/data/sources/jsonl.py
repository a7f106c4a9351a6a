"""Your own NL->code pairs as JSON lines, and several sources mixed into one data set.

* ``jsonl``: one object a line, ``{"nl", "code", "language"?, "split"?, "task_id"?}``; any other
  fields go to ``extras``. ``language`` and ``split`` fall back to the loader options. Task ids are
  ``jsonl/<task_id>`` (the line number when absent; ``-k`` appended to repeated ids).
* ``mixture``: the records of several sources side by side (e.g. CoNaLa + NL2Bash + CF rules for
  a multi-language model), each keeping its own task ids, splits and language. Configured only
  through its ``parts`` option, a list of ``{source, path, options}`` mappings.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from nl2code.data.records import DataError, LoadResult, Record
from nl2code.data.sources._io import SourceError, get_field, iter_jsonl, type_name, unique_ids

_RESERVED = ("nl", "code", "language", "split", "task_id")


def load_jsonl(path: Path, *, language: str = "", split: str = "train") -> LoadResult:
    """Your own pairs: JSON lines {nl, code, language?, split?, task_id?} (options fill the defaults).

    Rows with an empty ``nl`` or ``code`` are dropped and counted.
    """
    rows = list(iter_jsonl(path))
    if not rows:
        raise DataError(str(path), None, None, "no rows")
    result = LoadResult(records=[])
    kept: list[tuple[int, dict[str, Any], str, str]] = []
    for lineno, row in rows:
        nl = get_field(row, "nl", str, path, lineno)
        code = get_field(row, "code", str, path, lineno)
        lang = get_field(row, "language", str, path, lineno) if "language" in row else language
        if not lang:
            raise DataError(str(path), lineno, "language", "missing (or set the source option 'language')")
        row_split = get_field(row, "split", str, path, lineno) if "split" in row else split
        if "task_id" in row:
            get_field(row, "task_id", (str, int), path, lineno)
        if not nl.strip() or not code.strip():
            result.dropped["empty nl or code"] += 1
            continue
        kept.append((lineno, row, lang, row_split))
    ids = unique_ids("jsonl", [row.get("task_id", lineno) for lineno, row, _, _ in kept])
    for task_id, (lineno, row, lang, row_split) in zip(ids, kept, strict=True):
        extras = {k: v for k, v in row.items() if k not in _RESERVED} | {"line": lineno}
        result.records.append(Record(task_id, row_split, row["nl"], row["code"], lang, extras))
    return result


def load_mixture(path: Path | None = None, *, parts: list = []) -> LoadResult:  # noqa: B006 (read-only default)
    """Several sources as one data set: option parts = [{source, path, options}] (no PATH).

    Records keep their own task ids (each source prefixes them with its name), splits and
    languages; a task id found in two parts is an error. Dropped rows and notes are prefixed
    with the part's source name.
    """
    if path is not None:
        raise SourceError("source 'mixture' takes no PATH: give each part's path in its 'parts' entry")
    if not parts:
        raise SourceError("source 'mixture' needs the option 'parts': a list of {source, path, options}")
    from nl2code.data.sources import load_source

    result = LoadResult(records=[])
    seen: dict[str, int] = {}
    for i, part in enumerate(parts):
        where = f"mixture option parts[{i}]"
        if not isinstance(part, dict):
            raise SourceError(f"{where}: expected a mapping {{source, path, options}}, got {type_name(part)}")
        unknown = sorted(set(part) - {"source", "path", "options"})
        if unknown:
            raise SourceError(f"{where}: unknown key {unknown[0]!r} (allowed: source, path, options)")
        name, part_path, options = part.get("source"), part.get("path"), part.get("options") or {}
        if not isinstance(name, str) or name == "mixture":
            raise SourceError(f"{where}.source: expected the name of a (non-mixture) source, got {name!r}")
        if part_path is not None and not isinstance(part_path, str):
            raise SourceError(f"{where}.path: expected a string, got {type_name(part_path)}")
        if not isinstance(options, dict):
            raise SourceError(f"{where}.options: expected a mapping, got {type_name(options)}")
        try:
            loaded = load_source(name, part_path, **options)
        except SourceError as e:
            raise SourceError(f"{where}: {e}") from None
        for rec in loaded.records:
            if rec.task_id in seen:
                raise SourceError(f"{where}: task id {rec.task_id!r} also comes from parts[{seen[rec.task_id]}]")
            seen[rec.task_id] = i
        result.records += loaded.records
        result.dropped += Counter({f"{name}: {reason}": n for reason, n in loaded.dropped.items()})
        result.notes += [f"{name}: {note}" for note in loaded.notes]
        langs = ", ".join(f"{k} {v}" for k, v in Counter(r.language for r in loaded.records).items())
        result.notes.append(f"{name}: {len(loaded.records)} records ({langs})")
    return result
