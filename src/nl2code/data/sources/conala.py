"""CoNaLa curated (conala-train.json / conala-test.json): a JSON list of
``{"intent", "rewritten_intent", "snippet", "question_id"}``.

``nl`` is ``rewritten_intent``, or ``intent`` where that is null (79 train / 23 test rows; counted in
the notes). Task ids are ``conala/<question_id>`` with ``-k`` appended when a question id repeats
(k-th occurrence in file order); ``extras`` holds ``question_id``, ``intent``, ``rewritten_intent``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nl2code.data.records import DataError, LoadResult, Record
from nl2code.data.sources._io import get_field, read_json, unique_ids


def read_conala_rows(path: Path) -> list[dict[str, Any]]:
    """Read and validate one CoNaLa JSON file; rows are returned as they are in the file."""
    rows = read_json(path)
    if not isinstance(rows, list):
        raise DataError(str(path), None, None, "expected a JSON list of rows")
    for i, row in enumerate(rows):
        where = f"row {i}"
        if not isinstance(row, dict):
            raise DataError(str(path), where, None, "expected an object")
        get_field(row, "intent", str, path, where)
        get_field(row, "rewritten_intent", str, path, where, nullable=True)
        get_field(row, "snippet", str, path, where)
        get_field(row, "question_id", (int, str), path, where)
    return rows


def _split_of(path: Path) -> str:
    name = path.name.lower()
    if "train" in name:
        return "train"
    if "test" in name:
        return "test"
    return "all"


def load_conala(path: Path) -> LoadResult:
    """CoNaLa curated: a conala-{train,test}.json file, or a folder with both (2,379 / 500).

    The split comes from the file name (``train`` / ``test``; otherwise ``all``).
    """
    if path.is_dir():
        files = [path / "conala-train.json", path / "conala-test.json"]
        if not any(f.is_file() for f in files):
            raise DataError(str(path), None, None, "no conala-train.json or conala-test.json in this folder")
        files = [f for f in files if f.is_file()]
    else:
        files = [path]
    result = LoadResult(records=[])
    loaded = [(f, _split_of(f), read_conala_rows(f)) for f in files]
    ids = [row["question_id"] for _, _, rows in loaded for row in rows]
    task_ids = iter(unique_ids("conala", ids))
    for _f, split, rows in loaded:
        fallback = 0
        for row in rows:
            nl = row["rewritten_intent"]
            if nl is None:
                nl = row["intent"]
                fallback += 1
            extras = {k: row[k] for k in ("question_id", "intent", "rewritten_intent")}
            result.records.append(Record(next(task_ids), split, nl, row["snippet"], "python", extras))
        if fallback:
            result.notes.append(f"{split}: {fallback} rows have null rewritten_intent; used intent")
    return result
