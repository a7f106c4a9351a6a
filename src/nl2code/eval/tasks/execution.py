"""Shared machinery of the execution-based tasks (HumanEval, MBPP, MTPB).

A task turns each (problem, candidate) into a test *program* ending in a sentinel print; this
module runs them in the sandbox with per-problem timeouts, turns each outcome into a verdict, and
computes pass@k. The sentinel matters: exit status 0 alone is not success, because a completion
can call ``os._exit(0)`` before the tests run. The sentinel carries a random nonce per run; it guards
against accidents, not against a completion written to read its own file and forge it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from nl2code.eval import sandbox
from nl2code.eval.metrics.pass_at_k import mean_pass_at_k
from nl2code.eval.tasks.base import EvalContext

SENTINEL_PREFIX = "__nl2code_tests_passed__"
REFERENCE_TIMEOUT = 30.0  # limit for timing a trusted reference solution
_cache_lock = threading.Lock()


def new_sentinel() -> str:
    """A fresh sentinel line for one evaluation run."""
    return f"{SENTINEL_PREFIX}{secrets.token_hex(8)}"


def sentinel_code(sentinel: str) -> str:
    """Python that prints the sentinel; appended after the tests."""
    return f"\nprint({sentinel!r}, flush=True)\n"


@dataclass
class Check:
    """One program to execute for one sample."""

    task_id: str
    rank: int
    program: str
    sentinel: str
    completion: str | list[str] = ""  # echoed into the result row
    mem_mb: int = 1024


def verdict(result: sandbox.ExecResult, sentinel: str) -> tuple[bool, str]:
    """(passed, reason) of an execution: passed iff it exited 0 and printed the sentinel line."""
    printed = sentinel in result.stdout.splitlines()
    if result.ok and printed:
        return True, "passed"
    if result.ok:
        return False, "exited before the tests completed"
    return False, f"{result.status}: {result.reason}" if result.reason else result.status


def cache_dir() -> Path:
    """Where reference runtimes are cached (``$NL2CODE_CACHE_DIR`` or ``~/.cache/nl2code``)."""
    env = os.environ.get("NL2CODE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "nl2code"


def reference_runtimes(programs: dict[str, str], ctx: EvalContext, desc: str = "reference") -> dict[str, float]:
    """Seconds each trusted reference program takes in the sandbox (task_id -> s), cached on disk.

    The cache key is the program text and the isolation level, so a changed sandbox re-measures.
    """
    iso = sandbox.best_isolation()
    keys = {tid: hashlib.sha256(f"{iso}\0{prog}".encode()).hexdigest() for tid, prog in programs.items()}
    path = cache_dir() / "reference_runtimes.json"
    with _cache_lock:
        try:
            cache = json.loads(path.read_text())
        except (OSError, ValueError):
            cache = {}
    todo = [tid for tid in programs if keys[tid] not in cache]
    if todo:
        limits = sandbox.Limits(timeout=REFERENCE_TIMEOUT, mem_mb=2048)
        jobs = [sandbox.Job(programs[tid], "python", limits) for tid in todo]
        results = sandbox.run_many(jobs, ctx.workers, progress=desc if ctx.progress else False)
        for tid, res in zip(todo, results, strict=True):
            cache[keys[tid]] = round(res.seconds, 4)
        with _cache_lock:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(cache, sort_keys=True))
                os.replace(tmp, path)
            except OSError:
                pass  # an unwritable cache only costs time
    return {tid: float(cache[keys[tid]]) for tid in programs}


def problem_timeouts(
    task_ids: list[str], reference: dict[str, str] | None, ctx: EvalContext, floor: float | None = None
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
    """Execute every check; one result row each (task_id, rank, passed, status, reason, seconds, ...)."""
    jobs = [
        sandbox.Job(c.program, "python", sandbox.Limits(timeout=timeouts[c.task_id], mem_mb=c.mem_mb)) for c in checks
    ]
    results = sandbox.run_many(jobs, ctx.workers, progress=desc if ctx.progress else False)
    rows = []
    for c, res in zip(checks, results, strict=True):
        passed, reason = verdict(res, c.sentinel)
        rows.append(
            {
                "task_id": c.task_id,
                "rank": c.rank,
                "completion": c.completion,
                "passed": passed,
                "status": res.status,
                "reason": reason,
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
        "isolation": ",".join(sorted({r["isolation"] for r in rows})) or sandbox.best_isolation(),
    }
    if skipped:
        extra["ks_not_reported"] = skipped
        extra["ks_note"] = "pass@k is reported only for k <= the smallest number of samples of a problem"
    if missing:
        extra["note"] = f"{missing} problems had no samples and count as failed"
    return metrics, extra
