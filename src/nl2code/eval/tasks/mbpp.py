"""MBPP (Austin et al. 2021): pass@k on the test split (task_ids 11-510).

Program = ``completion + test_setup_code + the asserts of test_list`` (the bigcode harness'
convention; ``challenge_test_list`` is not used), followed by a sentinel print. Timeouts are
max(factor x the reference code's runtime in the sandbox, floor).
"""

from __future__ import annotations

import re

from nl2code.data.records import Record
from nl2code.eval.tasks.base import EvalContext, TaskResult
from nl2code.eval.tasks.execution import (
    Check,
    new_sentinel,
    pass_at_k_metrics,
    problem_timeouts,
    run_checks,
    sentinel_code,
)


def build_program(problem: Record, completion: str, sentinel: str) -> str:
    """The test program of one candidate."""
    x = problem.extras
    return completion + "\n" + x["test_setup_code"] + "\n" + "\n".join(x["test_list"]) + "\n" + sentinel_code(sentinel)


class MBPPTask:
    """MBPP test split; samples' ``completion`` is a whole program defining the function."""

    name = "mbpp"

    def load_problems(self, data_path: str | None) -> dict[str, Record]:
        from nl2code.cli import CLIError
        from nl2code.data.sources import load_source

        if data_path is None:
            raise CLIError("mbpp needs --data PATH (mbpp.jsonl, e.g. ../shared/data/mbpp/mbpp.jsonl)")
        return {r.task_id: r for r in load_source("mbpp", data_path).records if r.split == "test"}

    def normalize_task_id(self, task_id: object) -> str:
        """Accept ``mbpp/11``, ``Mbpp/11`` (evalplus), ``11`` and the integer 11."""
        m = re.fullmatch(r"(?:[Mm]bpp/)?(\d+)", str(task_id))
        return f"mbpp/{m.group(1)}" if m else str(task_id)

    def judge(self, problems: dict[str, Record], samples: dict[str, list[str]], ctx: EvalContext) -> TaskResult:
        sentinel = new_sentinel()
        checks = [
            Check(tid, rank, build_program(problems[tid], comp, sentinel), sentinel, comp)
            for tid, comps in samples.items()
            for rank, comp in enumerate(comps)
        ]
        refs = {tid: build_program(problems[tid], problems[tid].code, "__nl2code_reference__") for tid in samples}
        timeouts = problem_timeouts(list(samples), refs, ctx)
        rows = run_checks(checks, timeouts, ctx, "mbpp")
        metrics, extra = pass_at_k_metrics(list(problems), rows, ctx.ks)
        return TaskResult(rows, metrics, extra)


TASK = MBPPTask()
