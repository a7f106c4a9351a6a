"""Shared machinery of the execution-based tasks (HumanEval, MBPP).

A task turns each (problem, candidate) into a ``judge.JudgeJob``: the candidate's program runs in the
sandbox, the problem's tests in a separate judge process that calls the candidate over a channel of
plain values (``nl2code.eval.judge``), so nothing the candidate does can change its verdict. This
module runs the jobs with per-problem timeouts and computes pass@k.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nl2code.eval import judge, sandbox
from nl2code.eval.metrics.pass_at_k import mean_pass_at_k
from nl2code.eval.tasks.base import EvalContext, TaskResult
from nl2code.utils.io import atomic_write

if TYPE_CHECKING:
    from nl2code.data.records import Record

REFERENCE_TIMEOUT = 30.0  # limit for timing a trusted reference solution
_cache_lock = threading.Lock()


@dataclass
class Check:
    """One candidate of one problem: its judge job, and the completion echoed into the result row."""

    task_id: str
    rank: int
    job: judge.JudgeJob
    completion: str | list[str] = ""


def cache_dir() -> Path:
    """Where reference runtimes are cached (``$NL2CODE_CACHE_DIR`` or ``~/.cache/nl2code``)."""
    env = os.environ.get("NL2CODE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "nl2code"


def reference_runtimes(jobs: dict[str, judge.JudgeJob], ctx: EvalContext, desc: str = "reference") -> dict[str, float]:
    """Seconds each trusted reference solution takes through the judge (task_id -> s), cached on disk.

    The cache key is the candidate program, the tests and the isolation level, so a changed sandbox
    or judge re-measures.
    """
    iso = ctx.isolation or sandbox.best_isolation()
    keys = {
        tid: hashlib.sha256(f"judge1\0{iso}\0{j.candidate}\0{j.setup}\0{j.test}\0{j.call}".encode()).hexdigest()
        for tid, j in jobs.items()
    }
    path = cache_dir() / "reference_runtimes.json"
    with _cache_lock:
        try:
            cache = json.loads(path.read_text())
        except (OSError, ValueError):
            cache = {}
    todo = [tid for tid in jobs if keys[tid] not in cache]
    if todo:
        limits = sandbox.Limits(timeout=REFERENCE_TIMEOUT, mem_mb=2048)
        refs = [dataclasses.replace(jobs[tid], limits=limits) for tid in todo]
        results = judge.run_many_judged(refs, ctx.workers, desc if ctx.progress else False, ctx.isolation)
        for tid, res in zip(todo, results, strict=True):
            cache[keys[tid]] = round(res.seconds, 4)
        with _cache_lock:
            try:
                atomic_write(path, json.dumps(cache, sort_keys=True))
            except OSError:
                pass  # an unwritable cache only costs time
    return {tid: float(cache[keys[tid]]) for tid in jobs}


def problem_timeouts(
    task_ids: list[str], reference: dict[str, judge.JudgeJob] | None, ctx: EvalContext, floor: float | None = None
) -> dict[str, float]:
    """Per-problem timeout = max(factor x reference runtime, floor); the floor alone without a reference."""
    floor = ctx.timeout_floor if floor is None else floor
    out = dict.fromkeys(task_ids, floor)
    if reference and ctx.timeout_factor > 0:
        runtimes = reference_runtimes({t: reference[t] for t in task_ids if t in reference}, ctx)
        for tid, secs in runtimes.items():
            out[tid] = max(floor, ctx.timeout_factor * secs)
    return out


def run_checks(checks: list[Check], timeouts: dict[str, float], ctx: EvalContext, desc: str) -> list[dict]:
    """Judge every check; one result row each (task_id, rank, passed, status, reason, seconds, ...)."""
    jobs = [
        dataclasses.replace(c.job, limits=dataclasses.replace(c.job.limits, timeout=timeouts[c.task_id]))
        for c in checks
    ]
    results = judge.run_many_judged(jobs, ctx.workers, desc if ctx.progress else False, ctx.isolation)
    rows = []
    for c, res in zip(checks, results, strict=True):
        rows.append(
            {
                "task_id": c.task_id,
                "rank": c.rank,
                "completion": c.completion,
                "passed": res.passed,
                "status": res.status,
                "reason": res.reason,
                "seconds": round(res.seconds, 4),
                "timeout": round(timeouts[c.task_id], 3),
                "isolation": res.isolation,
            }
        )
    return rows


def pass_at_k_metrics(problem_ids: list[str], rows: list[dict], ks: list[int]) -> tuple[dict[str, float], dict]:
    """pass@k over all problems (a problem without samples counts as 0) and the counts for summary.json."""
    per: dict[str, list[bool]] = {tid: [] for tid in problem_ids}
    for r in rows:
        per[r["task_id"]].append(bool(r["passed"]))
    with_samples = [(len(v), sum(v)) for v in per.values() if v]
    metrics, skipped = mean_pass_at_k(with_samples, ks)
    missing = sum(1 for v in per.values() if not v)
    if missing and with_samples:
        # mean over all problems, the unsampled ones contributing 0
        metrics = {k: v * len(with_samples) / len(per) for k, v in metrics.items()}
    extra = {
        "problems": len(per),
        "problems_without_samples": missing,
        "samples": len(rows),
        "samples_passed": sum(1 for r in rows if r["passed"]),
        "problems_solved": sum(1 for v in per.values() if any(v)),
        "samples_per_problem": {str(n): c for n, c in sorted(Counter(len(v) for v in per.values() if v).items())},
        "status_counts": dict(Counter(r["status"] for r in rows)),
        "isolation": ",".join(sorted({r["isolation"] for r in rows})) or "none (nothing executed)",
    }
    if skipped:
        extra["ks_not_reported"] = skipped
        extra["ks_note"] = "pass@k is reported only for k <= the smallest number of samples of a problem"
    if missing:
        extra["note"] = f"{missing} problems had no samples and count as failed"
    return metrics, extra


def judge_checks(
    task_name: str,
    problems: dict[str, Record],
    samples: dict[str, list[str]],
    ctx: EvalContext,
    job: Callable[[Record, str], judge.JudgeJob],
) -> TaskResult:
    """Judge every sample with ``job(problem, completion)``; timeouts from the reference solutions."""
    checks = [
        Check(tid, rank, job(problems[tid], comp), comp)
        for tid, comps in samples.items()
        for rank, comp in enumerate(comps)
    ]
    refs = {tid: job(problems[tid], problems[tid].code) for tid in samples}
    timeouts = problem_timeouts(list(samples), refs, ctx)
    rows = run_checks(checks, timeouts, ctx, task_name)
    metrics, extra = pass_at_k_metrics(list(problems), rows, ctx.ks)
    return TaskResult(rows, metrics, extra)


class ExecutionTask(ABC):
    """Base of the tasks judged by running each candidate against the problem's tests (HumanEval, MBPP).

    A subclass names itself, loads its problems and builds the :class:`~nl2code.eval.judge.JudgeJob`
    of one candidate (:meth:`judge_job`); judging, timeouts and pass@k are shared.
    """

    name = "execution"
    executes_code = True

    @abstractmethod
    def judge_job(self, problem: Record, completion: str) -> judge.JudgeJob:
        """The judge job that runs ``completion`` against ``problem``'s tests."""

    def judge(self, problems: dict[str, Record], samples: dict[str, list[str]], ctx: EvalContext) -> TaskResult:
        return judge_checks(self.name, problems, samples, ctx, self.judge_job)
