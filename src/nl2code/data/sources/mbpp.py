"""MBPP (mbpp.jsonl): ``{text, code, task_id, test_setup_code, test_list, challenge_test_list}``.

Splits follow the MBPP paper by task id: 1-10 ``prompt`` (few-shot examples), 11-510 ``test``,
511-974 ``train`` (ids above 974 also go to ``train``). With ``validation=True``, 511-600 become
``validation`` and 601+ ``train``, as in the Hugging Face "full" configuration.

Task ids are ``mbpp/<task_id>``; the integer id is ``extras["task_id"]``.
"""

from __future__ import annotations

from pathlib import Path

from nl2code.data.records import DataError, LoadResult, Record
from nl2code.data.sources._io import get_field, get_str_list, iter_jsonl


def mbpp_split(task_id: int, validation: bool = False) -> str:
    """The split of an MBPP task id (see the module docstring)."""
    if task_id <= 10:
        return "prompt"
    if task_id <= 510:
        return "test"
    if validation and task_id <= 600:
        return "validation"
    return "train"


def load_mbpp(path: Path, *, validation: bool = False) -> LoadResult:
    """MBPP jsonl: 974 tasks; prompt 10 (ids 1-10) / test 500 (11-510) / train 464 (511-974).

    Args:
        path: ``mbpp.jsonl``.
        validation: split 511-600 off as ``validation`` (HF "full" layout).
    """
    result = LoadResult(records=[])
    seen: dict[int, int] = {}
    for lineno, row in iter_jsonl(path):
        text = get_field(row, "text", str, path, lineno)
        code = get_field(row, "code", str, path, lineno)
        task_id = get_field(row, "task_id", int, path, lineno)
        if task_id < 1:
            raise DataError(str(path), lineno, "task_id", f"must be >= 1, got {task_id}")
        if task_id in seen:
            raise DataError(str(path), lineno, "task_id", f"{task_id} already used on line {seen[task_id]}")
        seen[task_id] = lineno
        extras = {
            "task_id": task_id,
            "test_list": get_str_list(row, "test_list", path, lineno),
            "test_setup_code": get_field(row, "test_setup_code", str, path, lineno),
            "challenge_test_list": get_str_list(row, "challenge_test_list", path, lineno),
        }
        split = mbpp_split(task_id, validation)
        result.records.append(Record(f"mbpp/{task_id}", split, text, code, "python", extras))
    return result
