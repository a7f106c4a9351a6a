"""``nl2code demo``: the README's main command. Everything end to end on the standard library, on CPU."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from nl2code.cli import CLIError
from nl2code.rundir import TOKENIZER_DIR

DESCRIPTION = """\
Run the whole toolkit on data every Python install has, with no GPU and no internet: mine
docstring -> function pairs from the installed standard library, train a BPE tokenizer, pre-train
and fine-tune a small CodeGen (autoregressive) and a small CodeFusion (diffusion) model, generate
candidates for held-out functions and for HumanEval, score them (syntax validity, BLEU, CodeBLEU,
exact match, diversity; HumanEval pass@k in the sandbox) and write an HTML report with plots.
Under 10 minutes on 2 CPU cores (the two models train side by side, one process each); --quick
runs the same steps with tiny budgets in a minute or two."""

EPILOG = f"""\
outputs (in --out): report/index.html (+ loss.png, metrics.png, topk.png, summary.md), corpus/,
{TOKENIZER_DIR}/, configs/, one training run per model (codegen/, codefusion/: usable with
`nl2code serve --run` and `nl2code generate`), samples/ and eval/. Each finished step leaves a
marker in steps/; running the same command again resumes (training continues from its last
checkpoint). --force starts over.

examples:
  nl2code demo                       # runs/demo, then open runs/demo/report/index.html
  nl2code demo --quick --out runs/q  # the same steps with tiny budgets
  nl2code serve --run runs/demo/codegen   # then open http://127.0.0.1:8000/
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from nl2code.demo.settings import MODELS
    from nl2code.eval.sandbox import LEVELS

    p = sub.add_parser(
        "demo",
        help="the main job: mine, train, generate, evaluate and report, on CPU in minutes",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out", "--run-dir", dest="out", default="runs/demo", metavar="DIR", help="run directory (default runs/demo)"
    )
    p.add_argument("--quick", action="store_true", help="tiny budgets (~1-2 minutes), for tests and CI")
    p.add_argument("--force", action="store_true", help="delete DIR and start over instead of resuming")
    p.add_argument(
        "--models",
        default=",".join(MODELS),
        metavar="A,B",
        help=f"models to run, by config name in --configs (default {','.join(MODELS)})",
    )
    p.add_argument(
        "--configs",
        default=None,
        metavar="DIR",
        help="folder with <model>.yaml training configs (default: configs/demo of this checkout)",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed (training seeds are in the configs)")
    p.add_argument(
        "--jobs",
        type=int,
        default=2,
        metavar="N",
        help="models trained at the same time, one single-threaded process each (default 2; "
        "1 = one after the other in this process)",
    )
    p.add_argument(
        "--isolation",
        choices=LEVELS,
        default=None,
        metavar="LEVEL",
        help="run the HumanEval programs under this weaker sandbox level (an explicit opt-in; "
        f"one of {', '.join(LEVELS)}, see nl2code eval --help). Without it, HumanEval is not "
        "executed when bubblewrap, the required level, is missing (the demo and its report say so)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from nl2code.demo import DemoSettings, run_demo

    out = Path(args.out)
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    if not models:
        raise CLIError("--models is empty")
    settings = DemoSettings.quick() if args.quick else DemoSettings()
    try:
        settings = dataclasses.replace(settings, models=models, seed=args.seed)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.force and out.exists():
        if not (out / "settings.json").is_file() and any(out.iterdir()):
            raise CLIError(
                f"--force: {out} does not look like a demo run directory (no settings.json); not deleting it"
            )
        shutil.rmtree(out)
    start = time.monotonic()
    if args.jobs < 1:
        raise CLIError(f"--jobs must be >= 1, got {args.jobs}")
    report = run_demo(
        out,
        settings,
        Path(args.configs) if args.configs else None,
        say=lambda msg: print(msg, flush=True),
        jobs=args.jobs,
        isolation=args.isolation,
    )
    minutes, seconds = divmod(time.monotonic() - start, 60)
    print(f"demo finished in {int(minutes)} min {seconds:.0f} s; open {report}", file=sys.stderr)
    return 0
