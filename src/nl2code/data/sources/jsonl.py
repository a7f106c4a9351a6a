"""Your own NL->code pairs as JSON lines, and several sources mixed into one data set.

* ``jsonl``: one object a line, ``{"nl", "code", "language"?, "split"?, "task_id"?, "tests"?}``; any
  other fields go to ``extras``. ``language`` and ``split`` fall back to the loader options; a row
  with neither a ``split`` nor a ``split`` option goes to ``test`` or ``train`` by a stable hash of
  its text (``test_fraction`` of them to ``test``), and the notes say how many. Task ids are
  ``jsonl/<task_id>`` (the line number when absent; ``-k`` appended to repeated ids). ``tests``
  (MBPP-style assert lines, a list of strings) lets ``nl2code eval jsonl`` run the candidates.
* ``mixture`` (:func:`nl2code.data.sources.load_mixture`, beside the registry it reads through): the
  records of several sources side by side, each keeping its own task ids, splits and language.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

from nl2code.data.records import DataError, LoadResult, Record
from nl2code.data.sources._io import SourceError, get_field, get_str_list, iter_jsonl, unique_ids

_RESERVED = ("nl", "code", "language", "split", "task_id")
UNKNOWN_LANGUAGE = "unknown"  # no language given: text metrics only (no syntax check, no CodeBLEU)


def hash_split(nl: str, code: str, test_fraction: float) -> str:
    """``test`` or ``train`` from the row's text alone: stable across runs, machines and row order,
    and duplicate rows land on the same side (no train/test leak)."""
    digest = hashlib.blake2b(f"{nl}\0{code}".encode(), digest_size=8).digest()
    return "test" if int.from_bytes(digest, "big") / 2**64 < test_fraction else "train"


def load_jsonl(path: Path, *, language: str = "", split: str = "", test_fraction: float = 0.1) -> LoadResult:
    """Your own pairs: JSON lines {nl, code, language?, split?, task_id?, tests?} (options fill the defaults).

    Rows with an empty ``nl`` or ``code`` are dropped and counted. A row without ``split`` takes the
    option ``split``; when that is empty too, a hash of its text puts ``test_fraction`` of such rows
    in ``test`` and the rest in ``train``.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise SourceError(f"option 'test_fraction' of 'jsonl' must be in [0, 1), got {test_fraction}")
    rows = list(iter_jsonl(path))
    if not rows:
        raise DataError(str(path), None, None, "no rows")
    result = LoadResult(records=[])
    kept: list[tuple[int, dict[str, Any], str, str]] = []
    hashed: Counter = Counter()
    no_language = 0
    for lineno, row in rows:
        nl = get_field(row, "nl", str, path, lineno)
        code = get_field(row, "code", str, path, lineno)
        lang = get_field(row, "language", str, path, lineno) if "language" in row else language
        if not lang:
            lang, no_language = UNKNOWN_LANGUAGE, no_language + 1
        if "split" in row:
            row_split = get_field(row, "split", str, path, lineno)
        elif split:
            row_split = split
        else:
            row_split = hash_split(nl, code, test_fraction)
            hashed[row_split] += 1
        if "task_id" in row:
            get_field(row, "task_id", (str, int), path, lineno)
        if "tests" in row:
            get_str_list(row, "tests", path, lineno)
        if not nl.strip() or not code.strip():
            result.dropped["empty nl or code"] += 1
            continue
        kept.append((lineno, row, lang, row_split))
    if hashed:
        result.notes.append(
            f"{sum(hashed.values())} rows have no 'split': assigned by a hash of their text, {hashed['train']} "
            f"train / {hashed['test']} test (test_fraction={test_fraction}; give rows a 'split' or set "
            "data.options.split to choose)"
        )
    if no_language:
        result.notes.append(
            f"{no_language} rows have no 'language': '{UNKNOWN_LANGUAGE}' (text metrics only; set "
            "data.options.language=python or bash for syntax checks and CodeBLEU)"
        )
    ids = unique_ids("jsonl", [row.get("task_id", lineno) for lineno, row, _, _ in kept])
    for task_id, (lineno, row, lang, row_split) in zip(ids, kept, strict=True):
        extras = {k: v for k, v in row.items() if k not in _RESERVED} | {"line": lineno}
        result.records.append(Record(task_id, row_split, row["nl"], row["code"], lang, extras))
    return result
