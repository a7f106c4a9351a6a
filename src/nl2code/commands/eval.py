"""``nl2code eval TASK --samples FILE --out DIR``: score samples from any model on a benchmark."""

from __future__ import annotations

import argparse
import json
import os
import sys

from nl2code.cli import CLIError


def parse_ks(text: str) -> list[int]:
    """``"1,3,5"`` -> [1, 3, 5]; every k a positive integer."""
    try:
        ks = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise CLIError(f"bad --k {text!r}: expected comma-separated positive integers") from None
    if not ks or ks[0] < 1:
        raise CLIError(f"bad --k {text!r}: expected comma-separated positive integers")
    return ks


def isolation_for(task_name: str, opt_in: str | None, data_path: str | None = None) -> str | None:
    """The isolation label the task's generated code will run under (announced on stderr), or None
    for a task that executes no code. Fails closed: CLIError (one line) when the required level is
    missing and ``opt_in`` does not name a weaker one, or when the named level is not available.
    A task whose data decides (``jsonl``: rows with ``tests``) reads its problems first, nothing else."""
    from nl2code.eval import sandbox
    from nl2code.eval.tasks import get_task

    task = get_task(task_name)
    decides = getattr(task, "executes_code_for", None)
    executes = decides(data_path) if decides is not None else getattr(task, "executes_code", True)
    if not executes:  # a task says so when it runs no code
        return None
    try:
        label = sandbox.require(opt_in)
    except sandbox.IsolationError as e:
        raise CLIError(str(e)) from None
    print(sandbox.describe(label), file=sys.stderr, flush=True)
    return label


def run(args: argparse.Namespace) -> int:
    from nl2code.data.sources import SourceError
    from nl2code.eval.harness import run_eval
    from nl2code.eval.sandbox import IsolationError
    from nl2code.eval.tasks import EvalContext

    if args.limit is not None and args.limit < 1:
        raise CLIError(f"--limit must be >= 1, got {args.limit}")
    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be >= 1, got {args.workers}")
    if args.timeout_floor <= 0 or args.timeout_factor < 0:
        raise CLIError("--timeout-floor must be > 0 and --timeout-factor >= 0")
    isolation = isolation_for(args.task, args.isolation, args.data)  # before samples are read or code is run
    ctx = EvalContext(
        ks=parse_ks(args.k),
        workers=args.workers or os.cpu_count() or 1,
        timeout_factor=args.timeout_factor,
        timeout_floor=args.timeout_floor,
        progress=not args.no_progress and sys.stderr.isatty(),
        cf_semantics=args.cf_semantics,
        bash_group=args.bash_group,
        isolation=isolation,
    )
    try:
        summary = run_eval(args.task, args.samples, args.out, args.data, ctx, args.limit, args.seed)
    except (SourceError, IsolationError) as e:  # IsolationError: the sandbox's own refusal, in depth
        raise CLIError(str(e)) from None
    for warning in summary["warnings"]:
        print(f"nl2code eval: warning: {warning}", file=sys.stderr)
    print(
        json.dumps(
            {"task": summary["task"], "metrics": summary["metrics"], "isolation": summary["isolation"], "out": args.out}
        )
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from nl2code.eval import sandbox
    from nl2code.eval.tasks import task_names
    from nl2code.eval.tasks.base import CF_SEMANTICS

    p = sub.add_parser(
        "eval",
        help="score model samples on a benchmark (sandboxed execution, pass@k, BLEU, ...)",
        description="Score samples (JSONL, one {task_id, completion} a line; several lines per task = "
        "several candidates in rank order; MTPB rows carry test_case + completions) and write "
        "DIR/results.jsonl, DIR/summary.json and DIR/summary.md. Generated code runs only in the "
        "sandbox, under bubblewrap (as a private unprivileged uid when run as root); without it the command "
        "refuses, unless --isolation names a weaker level. The level is printed, and recorded in every result "
        "row and in summary.json.",
    )
    p.add_argument("task", choices=task_names(), help="benchmark")
    p.add_argument("--samples", required=True, metavar="FILE", help="samples JSONL")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (written at the end)")
    p.add_argument(
        "--data", metavar="PATH", help="benchmark data (default: humaneval from its package; the other tasks need it)"
    )
    p.add_argument(
        "--k",
        default="1,3,5",
        help="ks for pass@k / top-k metrics (default 1,3,5; a k larger "
        "than a problem's number of samples is not reported)",
    )
    p.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="score only N problems, drawn at random with --seed: the same problems as generate --limit N --seed S "
        "(metrics are means over those N)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit sample (default 0, as generate's)")
    p.add_argument("--workers", type=int, default=None, help="parallel sandboxes (default: CPU count)")
    p.add_argument("--timeout-floor", type=float, default=3.0, help="minimum seconds per program (default 3)")
    p.add_argument(
        "--timeout-factor",
        type=float,
        default=3.0,
        help="timeout = max(factor x reference solution runtime, floor) (default 3; 0 = floor only)",
    )
    p.add_argument(
        "--cf-semantics",
        choices=CF_SEMANTICS,
        default="excel",
        help="codefusion-cf only: run rules with Excel's semantics (default) or with the conventions the "
        "benchmark's train labels follow (text counts as 0, first duplicate marked, ...)",
    )
    p.add_argument(
        "--isolation",
        choices=sandbox.LEVELS,
        default=None,
        metavar="LEVEL",
        help="opt in to running generated code under a weaker isolation level than bubblewrap, which is "
        "required otherwise: "
        + "; ".join(f"{level} = {text}" for level, text in sandbox.LEVEL_HELP.items())
        + " (python -m nl2code.eval.sandbox shows what works here)",
    )
    p.add_argument(
        "--bash-group",
        choices=("exact", "normalized"),
        default="exact",
        help="nl2bash tasks: gold commands shared by descriptions with identical text (default) or the same "
        "normalised text (the official NL2Bash scorer's grouping: case, punctuation, stop words, stems)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
