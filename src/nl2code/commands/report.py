"""``nl2code report RUN_OR_EVAL_DIR... --out DIR``: one HTML page comparing runs and evaluations."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    from nl2code.report import build_report

    page = build_report(args.inputs, args.out)
    print(f"wrote {page}", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="an HTML report comparing runs and evaluations (metrics, loss and top-k curves, every sample)",
        description="Build DIR/index.html, a self-contained page for any runs (nl2code train --run-dir) and "
        "evaluations (nl2code eval --out): metrics side by side, loss curves, top-k curves, and every "
        "sample browsable and filterable by evaluation, pass/fail and text, beside its reference. "
        "A run's sub-folders holding an evaluation are included with it.",
        epilog="example: nl2code report runs/mine runs/mine/eval runs/other/eval --out report/",
    )
    p.add_argument("inputs", nargs="+", metavar="RUN_OR_EVAL_DIR", help="run directories and eval output folders")
    p.add_argument("--out", default="report", metavar="DIR", help="output folder for index.html (default report/)")
    p.set_defaults(func=run)
