"""Your own NL->code pairs as JSON lines, and several sources mixed into one data set.

* ``jsonl``: one object a line, ``{"nl", "code", "language"?, "split"?, "task_id"?}``; any other
  fields go to ``extras``. ``language`` and ``split`` fall back to the loader options. Task ids are
  ``jsonl/<task_id>`` (the line number when absent; ``-k`` appended to repeated ids).
* ``mixture`` (:func:`nl2code.data.sources.load_mixture`, beside the registry it reads through): the
  records of several sources side by side, each keeping its own task ids, splits and language.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nl2code.data.records import DataError, LoadResult, Record
from nl2code.data.sources._io import get_field, iter_jsonl, unique_ids

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
