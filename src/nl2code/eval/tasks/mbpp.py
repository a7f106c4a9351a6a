"""MBPP (Austin et al. 2021): pass@k on the test split (task_ids 11-510).

The candidate program is the completion alone, in the sandbox; ``test_setup_code`` and the asserts
of ``test_list`` (the bigcode harness' convention; ``challenge_test_list`` is not used) run in the
judge, where the names they use but do not define (the function under test, a ``Node`` class the
setup code builds trees with) are the candidate's, reached through ``nl2code.eval.judge``. Timeouts
are max(factor x the reference code's runtime, floor).
"""

from __future__ import annotations

import ast
import re

from nl2code.data.records import Record
from nl2code.eval.judge import JudgeJob
from nl2code.eval.tasks.base import TaskError
from nl2code.eval.tasks.execution import ExecutionTask


def names_tested(reference: str, tests: str) -> tuple[str, ...]:
    """Top-level functions and classes of ``reference`` that ``tests`` use: the names that stand for
    the candidate's even where they shadow a builtin (mbpp/126 defines ``sum``)."""
    try:
        defined = {n.name for n in ast.parse(reference).body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
        used = {n.id for n in ast.walk(ast.parse(tests)) if isinstance(n, ast.Name)}
    except SyntaxError:
        return ()
    return tuple(sorted(defined & used))


def tested_names(problem: Record) -> tuple[str, ...]:
    """:func:`names_tested` of an MBPP problem (its setup code and asserts)."""
    return names_tested(problem.code, "\n".join([problem.extras["test_setup_code"], *problem.extras["test_list"]]))


def judge_job(problem: Record, completion: str) -> JudgeJob:
    """The judge job of one candidate."""
    x = problem.extras
    test = x["test_setup_code"] + "\n" + "\n".join(x["test_list"]) + "\n"
    return JudgeJob(completion, test, names=tested_names(problem))


class MBPPTask(ExecutionTask):
    """MBPP test split; samples' ``completion`` is a whole program defining the function."""

    name = "mbpp"
    judge_job = staticmethod(judge_job)

    def load_problems(self, data_path: str | None) -> dict[str, Record]:
        from nl2code.data.sources import load_source

        if data_path is None:
            raise TaskError("mbpp needs --data PATH (mbpp.jsonl, e.g. ../shared/data/mbpp/mbpp.jsonl)")
        return {r.task_id: r for r in load_source("mbpp", data_path).records if r.split == "test"}

    def normalize_task_id(self, task_id: object) -> str:
        """Accept ``mbpp/11``, ``Mbpp/11`` (evalplus), ``11`` and the integer 11."""
        m = re.fullmatch(r"(?:[Mm]bpp/)?(\d+)", str(task_id))
        return f"mbpp/{m.group(1)}" if m else str(task_id)


TASK = MBPPTask()
