"""``nl2code merge-moe MERGE.yaml --out DIR``: merge dense runs into one MoE run (mergekit-moe style)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nl2code.cli import CLIError

EPILOG = """\
MERGE.yaml (mergekit-moe's field names; models are run directories):
  base_model: runs/base          # embeddings, attention, norms and LM head come from here
  gate_mode: hidden              # hidden | hidden_last | cheap_embed | random
  experts_per_token: 2           # top-k routing (softmax, renormalised over the k)
  seed: 0                        # random gates and noise_scale
  experts:                       # expert e's FFNs fill slot e of every layer's MoE block
    - source_model: runs/python-expert
      positive_prompts: ["convert a list of strings to integers"]
      negative_prompts: ["find all files modified today"]   # optional
      noise_scale: 0.0           # optional: Gaussian noise on the copied FFN weights
      residual_scale: 1.0        # optional: factor on the expert's down projection
    - source_model: runs/bash-expert
      positive_prompts: ["find files", "list processes"]

Experts must share the base's architecture and tokenizer (train them from the base with
init_from). DIR gets a run directory's config, tokenizer and weights, merge.yaml (the resolved merge
config) and merge_report.json (gate statistics and warnings); `nl2code generate` and `nl2code eval`
read it like any run, and `nl2code train` with `init_from: DIR` and `train.trainable: router`
fine-tunes only its routers.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge-moe",
        help="merge a base run and expert runs into a sparse MoE run (mergekit-moe style)",
        description="Build a mixture-of-experts run whose FFN experts come from the expert runs and whose "
        "other weights come from the base run, with routers initialised from prompts (gate_mode).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="MERGE.yaml", help="merge config (see below)")
    p.add_argument(
        "--out", "--run-dir", dest="out", required=True, metavar="DIR", help="new run directory (must not hold a run)"
    )
    p.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (0 = PyTorch's default)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nl2code import config as config_io
    from nl2code.models.merge import load_merge_config, merge, write_run
    from nl2code.rundir import RunDir
    from nl2code.utils.device import set_threads
    from nl2code.utils.io import atomic_write

    out = Path(args.out)
    if RunDir(out).holds_run():
        raise CLIError(f"{out} already holds a run; choose a new --out")
    if args.threads < 0:
        raise CLIError(f"--threads must be >= 0, got {args.threads}")
    set_threads(args.threads)
    cfg = load_merge_config(args.config)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr)

    run_cfg, model, base_dir, report = merge(cfg, str(args.config), say)
    write_run(out, run_cfg, model, base_dir)
    config_io.save(cfg, out / "merge.yaml")
    atomic_write(out / "merge_report.json", json.dumps(report, indent=1) + "\n")
    print(json.dumps({"out": str(out), "experts": len(cfg.experts), "experts_per_token": cfg.experts_per_token,
                      "gate_mode": cfg.gate_mode, "parameters": report["parameters"],
                      "warnings": len(report["warnings"])}))
    return 0
