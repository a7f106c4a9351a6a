"""CodeFusion training step with the chunked head loss vs the plain head + ``F.cross_entropy``.

The chunked path (``nl2code.objectives.linear_ce``) never holds the (batch x code_length x vocab)
logits. Both sides run the same model, batch, generator seed and fused AdamW; only the head's
cross-entropy differs (``chunked_head: false`` in the objective config on the plain side). Step times are medians of
interleaved repeats in one process; peak RSS is measured per side in a fresh child process.

    python benchmarks/head_loss.py [--quick] [--threads 1] [--repeats 15]

writes benchmarks/results/head_loss.json and .md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass

import torch
from _common import (
    header_md,
    interleaved,
    load_average,
    machine_info,
    md_table,
    peak_rss_mb,
    set_threads,
    write_results,
)


@dataclass(frozen=True)
class Case:
    name: str
    preset: str
    vocab: int
    batch: int
    code_len: int  # real code tokens per row (the model pads to its code_length)
    nl_len: int
    dropout: float = 0.0


CASES = [
    Case("mini, vocab 4096, dropout 0.1 (the results runs)", "codefusion-mini", 4096, 32, 30, 20, 0.1),
    Case("mini, vocab 32100 (CodeT5's), dropout 0.1", "codefusion-mini", 32100, 32, 30, 20, 0.1),
]
QUICK = [Case("tiny, vocab 4096", "codefusion-tiny", 4096, 8, 16, 12)]
HEADS = {"plain": False, "chunked": True}  # side -> the objective's chunked_head


def make_step(case: Case, head: str):
    """A closure running one training step with ``head`` ("plain" or "chunked")."""
    from nl2code.data.collate import Batch
    from nl2code.models.codefusion import CodeFusion, preset
    from nl2code.objectives.diffusion import CodeFusionLossConfig, CodeFusionObjective

    g = torch.Generator().manual_seed(0)
    model = CodeFusion(preset(case.preset, vocab_size=case.vocab, dropout=case.dropout), generator=g)
    ids = torch.randint(4, case.vocab, (case.batch, case.code_len), generator=g)
    nl = torch.randint(4, case.vocab, (case.batch, case.nl_len), generator=g)
    ones = torch.ones_like(ids, dtype=torch.bool)
    batch = Batch(ids, ones, ones.clone(), {"nl": nl, "nl_mask": torch.ones_like(nl, dtype=torch.bool)})
    objective = CodeFusionObjective(CodeFusionLossConfig(task="finetune", chunked_head=HEADS[head]))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def step() -> None:
        loss, _ = objective(model, batch, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, model.cfg


def child(case: Case, head: str, steps: int) -> dict:
    step, _ = make_step(case, head)
    for _ in range(steps):
        step()
    return {"peak_rss_mib": peak_rss_mb()}


def measure(cases: list[Case], threads: int, repeats: int) -> list[dict]:
    rows = []
    for case in cases:
        steps = {head: make_step(case, head) for head in HEADS}
        cfg = steps["plain"][1]
        times = interleaved({head: fn for head, (fn, _) in steps.items()}, repeats=repeats, warmup=2)
        rss = {}
        for head in HEADS:
            out = subprocess.run(
                [sys.executable, __file__, "--child", case.name, head, "--threads", str(threads)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            rss[head] = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"]
        logits_mib = case.batch * cfg.code_length * case.vocab * 4 / 2**20
        rows.append({
            "case": case.name, "preset": case.preset, "vocab": case.vocab, "batch": case.batch,
            "code_length": cfg.code_length, "logits_mib": round(logits_mib, 1),
            "plain_ms": round(1000 * times["plain"]["median_s"], 1),
            "chunked_ms": round(1000 * times["chunked"]["median_s"], 1),
            "speedup": round(times["plain"]["median_s"] / times["chunked"]["median_s"], 3),
            "speedup_best": round(min(times["plain"]["runs_s"]) / min(times["chunked"]["runs_s"]), 3),
            "runs_s": {k: v["runs_s"] for k, v in times.items()},
            "plain_peak_rss_mib": rss["plain"], "chunked_peak_rss_mib": rss["chunked"],
        })  # fmt: skip
    return rows


def markdown(rows: list[dict]) -> str:
    table = md_table(
        ["case", "batch x code_length", "full logits MiB", "plain ms/step", "chunked ms/step", "speedup",
         "speedup (best step)",
         "plain peak RSS MiB", "chunked peak RSS MiB"],
        [[r["case"], f"{r['batch']} x {r['code_length']}", r["logits_mib"], r["plain_ms"], r["chunked_ms"],
          r["speedup"], r["speedup_best"], r["plain_peak_rss_mib"], r["chunked_peak_rss_mib"]] for r in rows],
    )  # fmt: skip
    return "## CodeFusion fine-tuning step\n\n" + table + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one tiny case, few repeats (seconds)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the results runs)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--child", nargs=2, metavar=("CASE", "HEAD"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    threads = set_threads(args.threads)
    if args.child:
        case = next(c for c in CASES + QUICK if c.name == args.child[0])
        print(json.dumps(child(case, args.child[1], steps=3)))
        return 0
    cases, repeats = (QUICK, 2) if args.quick else (CASES, args.repeats)
    info = machine_info()
    rows = measure(cases, threads, repeats)
    info["load_after"] = load_average()
    command = " ".join(["python benchmarks/head_loss.py", *(sys.argv[1:] if argv is None else argv)])
    notes = [
        f"Median of {repeats} interleaved steps per side after 2 warm-up steps ('best step': the fastest of "
        "each side, the least disturbed on a shared machine); peak RSS of a fresh child "
        "running 3 steps (model, AdamW state and activations included).",
        "Both sides: same weights, batch and generator seed; only the head cross-entropy differs.",
    ]
    md_text = header_md("Chunked head loss", command, info, notes) + "\n" + markdown(rows)
    write_results("head_loss", {"command": command, "machine": info, "rows": rows}, md_text)
    print(md_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
