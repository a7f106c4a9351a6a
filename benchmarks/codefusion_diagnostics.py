"""CodeFusion internals of a trained run on held-out pairs (issue #18): x^_0 accuracy by timestep,
clean decode of D+H, reverse loop vs one x^_0 prediction, embedding norms, loss terms by t, and
candidate diversity vs correctness (see ``nl2code.diagnostics.codefusion``).

    .venv/bin/python benchmarks/codefusion_diagnostics.py --run RUN_DIR [--split test] [--n 200]
        [--seed 0] [--steps 50] [--k 5] [--rounding ROUNDING] [--out PREFIX]

Pairs are a seeded random sample of ``--n`` rows of the split (the run's data source and path), the
utterance and ``code <eos>`` tokenised as in fine-tuning (``format: code_nl``); code longer than the
model's ``code_length`` is skipped. Writes ``PREFIX.json`` and ``PREFIX.md`` (default
``RUN_DIR/diagnostics``) and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

from nl2code.api import load_run
from nl2code.data.sources import load_source
from nl2code.diagnostics import codefusion as diag
from nl2code.generation.diffusion import DiffusionGenerator


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, type=Path, help="a finished CodeFusion run directory")
    p.add_argument("--split", default="test")
    p.add_argument("--data", default=None, help="benchmark file (default: the run's data.path)")
    p.add_argument("--n", type=int, default=200, help="pairs, a seeded random sample of the split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=50, help="inference steps of the loops and candidates")
    p.add_argument("--k", type=int, default=5, help="candidates per utterance")
    p.add_argument("--rounding", default=None, help="sampler rounding (default: the sampler's default)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="output prefix (default RUN/diagnostics)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    run = load_run(args.run)
    model, tok, cfg = run.model, run.tokenizer, run.config
    data = cfg.data
    records = load_source(data.source, args.data or data.path).split(args.split)
    encode = DiffusionGenerator(run).encode_prompt  # the encoder's input as sampling builds it (retrieval too)
    pairs = []
    for rec in records:
        code = tok.encode(rec.code) + [tok.eos_id]
        if rec.nl and len(code) <= model.cfg.code_length:
            pairs.append((encode(rec.nl), code))
    kept = len(pairs)
    pairs = random.Random(args.seed).sample(pairs, min(args.n, kept))
    batch = diag.GoldBatch.build(model, [n for n, _ in pairs], [c for _, c in pairs])
    start = time.time()
    report = diag.run(model, batch, seed=args.seed, num_steps=args.steps, k=args.k, eos_id=tok.eos_id,
                      rounding=args.rounding)  # fmt: skip
    report.update(run=str(args.run), split=args.split, fitting_rows=kept, rows=len(records),
                  seconds=round(time.time() - start, 1), rounding=args.rounding or "default")  # fmt: skip
    out = args.out or args.run / "diagnostics"
    md = diag.to_markdown(report)
    md += f"\nRun {args.run}, split {args.split}: {len(pairs)} of {kept} fitting rows ({len(records)} in all), "
    md += f"seed {args.seed}, {args.steps} steps, rounding {report['rounding']}.\n"
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
