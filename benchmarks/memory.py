"""Peak resident memory (RSS) of training and of sampling, for each model preset.

Every measurement runs in a fresh child process (so peaks do not carry over), builds the preset with
an 8,192-token vocabulary and either takes two training steps (objective + backward + fused AdamW, fp32)
or samples (codegen: 4 prompts of 16 tokens, 32 new tokens with the KV cache; codefusion: 4 utterances,
20 reverse steps), then reports its peak RSS. A child that only imports torch and nl2code gives the
baseline every row includes.

    python benchmarks/memory.py [--quick] [--threads N] [--max-params N]

writes benchmarks/results/memory.json and .md. Presets over ``--max-params`` (default 400M:
codegen-2.7b and up) are listed with the memory their weights and optimizer state need, not run.
``--quick`` also skips codegen-350m, codefusion-75m and small (about two minutes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _common import RESULTS, header_md, load_average, machine_info, md_table, peak_rss_mb, write_results

VOCAB = 8192
# (family, preset, batch, sequence length for codegen training); the largest presets train on less.
PRESETS: list[tuple[str, str, int, int]] = [
    ("codegen", "tiny", 8, 256),
    ("codegen", "small", 8, 256),
    ("codegen", "base", 8, 256),
    ("codegen", "llama-small", 8, 256),
    ("codefusion", "codefusion-tiny", 8, 0),
    ("codefusion", "codefusion-mini", 8, 0),
    ("codefusion", "codefusion-small", 8, 0),
    ("codegen", "codegen-350m", 1, 128),
    ("codefusion", "codefusion-75m", 2, 0),
]
LARGE = {"codegen-350m", "codefusion-75m"}
QUICK_SKIP = LARGE | {"small"}  # --quick: every child imports torch afresh, so fewer cells
MAX_PARAMS = 400_000_000  # larger presets (codegen-2.7b and up) are listed with their estimate, not run


def all_presets() -> list[tuple[str, str, int, int]]:
    """Every preset of both families: the measured ones above, then the rest (at batch 1 x 128)."""
    from nl2code.models.codefusion import PRESETS as CF
    from nl2code.models.presets import PRESETS as CG

    known = {p[1] for p in PRESETS}
    rest = [("codegen", n, 1, 128) for n in CG if n not in known] + [
        ("codefusion", n, 1, 0) for n in CF if n not in known
    ]
    return PRESETS + rest


def param_count(family: str, name: str) -> int:
    """Parameters of a preset at this benchmark's vocabulary, without building it."""
    if family == "codegen":
        from nl2code.models.presets import count_parameters, preset

        return count_parameters(preset(name, vocab_size=VOCAB))
    from nl2code.models.codefusion import CodeFusion, preset

    with torch.device("meta"):
        return sum(p.numel() for p in CodeFusion(preset(name, vocab_size=VOCAB)).parameters())


def build(family: str, name: str) -> torch.nn.Module:
    if family == "codegen":
        from nl2code.models.codegen import CodeGenLM
        from nl2code.models.presets import preset

        return CodeGenLM(preset(name, vocab_size=VOCAB), torch.Generator().manual_seed(0))
    from nl2code.models.codefusion import CodeFusion, preset

    return CodeFusion(preset(name, vocab_size=VOCAB), torch.Generator().manual_seed(0))


def train_steps(model: torch.nn.Module, family: str, batch: int, seq: int, steps: int = 2) -> None:
    from nl2code.data.collate import Batch
    from nl2code.train.config import TrainConfig
    from nl2code.train.optim import build_optimizer

    g = torch.Generator().manual_seed(1)
    if family == "codegen":
        from nl2code.objectives.autoregressive import CausalLMObjective

        ids = torch.randint(0, VOCAB, (batch, seq), generator=g)
        ones = torch.ones_like(ids, dtype=torch.bool)
        data, objective = Batch(ids, ones, ones), CausalLMObjective()
    else:
        from nl2code.objectives.diffusion import CodeFusionObjective

        cfg = model.cfg
        code = torch.randint(3, VOCAB, (batch, cfg.code_length), generator=g)
        nl = torch.randint(3, VOCAB, (batch, cfg.max_nl_length), generator=g)
        ones = torch.ones_like(code, dtype=torch.bool)
        extras = {"nl": nl, "nl_mask": torch.ones_like(nl, dtype=torch.bool)}
        data, objective = Batch(code, ones, ones, extras), CodeFusionObjective()
    opt = build_optimizer(model, TrainConfig(), torch.device("cpu"))
    model.train()
    for _ in range(steps):
        loss, _ = objective(model, data, g)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)


@torch.no_grad()
def sample_once(model: torch.nn.Module, family: str) -> None:
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(3, VOCAB, (4, 16), generator=g).tolist()
    if family == "codegen":
        from nl2code.sampling.autoregressive import sample

        sample(model.eval(), prompts, max_new_tokens=32, temperature=0.0)
    else:
        from nl2code.sampling.diffusion import DiffusionSampler

        DiffusionSampler(model.eval(), num_steps=20).generate(prompts, 1, g)


def child(mode: str, family: str, name: str, batch: int, seq: int) -> dict[str, Any]:
    """Runs in the child process: one measurement, returned as a dict (printed as JSON)."""
    import nl2code.models  # noqa: F401  (the baseline includes the package import)

    start = time.perf_counter()
    params = None
    if mode != "baseline":
        model = build(family, name)
        params = sum(p.numel() for p in model.parameters())
        if mode == "train":
            train_steps(model, family, batch, seq)
        else:
            sample_once(model, family)
    return {"peak_rss_mb": peak_rss_mb(), "params": params, "seconds": round(time.perf_counter() - start, 2)}


def measure(mode: str, family: str, name: str, batch: int, seq: int, threads: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        mode,
        family,
        name,
        str(batch),
        str(seq),
        "--threads",
        str(threads),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {proc.returncode}: {tail[0]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(
    quick: bool,
    threads: int,
    presets: list[tuple[str, str, int, int]] | None = None,
    max_params: int = MAX_PARAMS,
) -> dict[str, Any]:
    machine = machine_info()
    machine["torch_threads"] = threads or machine["cpus"]
    baseline = measure("baseline", "-", "-", 0, 0, threads)
    rows = []
    for family, name, batch, seq in presets or [p for p in all_presets() if not (quick and p[1] in QUICK_SKIP)]:
        n = param_count(family, name)
        if n > max_params:
            # fp32: weights, gradients and two AdamW moments are 16 bytes a parameter; sampling needs the 4 of weights.
            rows.append(
                {
                    "family": family,
                    "preset": name,
                    "params": n,
                    "skipped": f"over --max-params {max_params:,}: training needs >= {16 * n / 2**30:.0f} GiB, "
                    f"sampling >= {4 * n / 2**30:.0f} GiB (fp32 weights and optimizer state alone)",
                }
            )
            continue
        train = measure("train", family, name, batch, seq, threads)
        samp = measure("sample", family, name, batch, seq, threads)
        rows.append(
            {
                "family": family,
                "preset": name,
                "params": train.get("params") or samp.get("params"),
                "train_batch": batch,
                "train_seq": seq or "code+nl lengths of the preset",
                "train": train,
                "sample": samp,
            }
        )
    machine["load_after"] = load_average()
    return {"quick": quick, "machine": machine, "vocab_size": VOCAB, "baseline": baseline, "presets": rows}


def markdown(res: dict[str, Any], command: str) -> str:
    base = res["baseline"].get("peak_rss_mb")
    notes = [
        f"Baseline (python + torch + nl2code imported, no model): {base} MiB peak RSS; every row includes it.",
        f"Vocabulary {res['vocab_size']}; training = 2 steps, fp32, fused AdamW; sampling as in the module "
        "docstring. One fresh process per cell.",
    ]

    def cell(r: dict[str, Any]) -> Any:
        return r.get("peak_rss_mb", r.get("error"))

    def over(r: dict[str, Any]) -> Any:
        return round(r["peak_rss_mb"] - base, 1) if "peak_rss_mb" in r and base else "-"

    rows, skipped = [], []
    for r in res["presets"]:
        if "skipped" in r:
            skipped.append(f"- {r['preset']} ({r['params']:,} parameters): {r['skipped']}.")
            continue
        rows.append(
            [
                r["preset"],
                r["params"],
                f"{r['train_batch']} x {r['train_seq']}",
                cell(r["train"]),
                over(r["train"]),
                cell(r["sample"]),
                over(r["sample"]),
            ]
        )
    heads = ["preset", "params", "train batch x seq", "train peak RSS MiB", "over baseline", "sample peak RSS MiB"]
    table = md_table([*heads, "over baseline"], rows)
    tail = ("\n\nNot measured:\n\n" + "\n".join(skipped)) if skipped else ""
    return header_md("Peak memory", command, res["machine"], notes) + "\n" + table + tail + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="skip codegen-350m, codefusion-75m and small (about 2 minutes)"
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads in each child (0 = all cores)")
    ap.add_argument("--max-params", type=int, default=MAX_PARAMS, help="presets above this are listed, not run")
    ap.add_argument("--child", nargs=5, metavar=("MODE", "FAMILY", "PRESET", "BATCH", "SEQ"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        mode, family, name, batch, seq = args.child
        print(json.dumps(child(mode, family, name, int(batch), int(seq))))
        return 0
    command = " ".join(["python benchmarks/memory.py", *(sys.argv[1:] if argv is None else argv)])
    res = run(args.quick, args.threads, max_params=args.max_params)
    res["command"] = command
    text = markdown(res, command)
    write_results("memory", res, text, args.out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
