"""How much does the NL condition an AR (``codegen``, ``data.format: nl_code``) run's output?

    .venv/bin/python benchmarks/ar_diagnostics.py --run DIR [--split heldout|test] [--limit N]
        [--generate N] [--seed S] [--checkpoints] [--out DIR]

On pairs the run never trained on (``heldout``: the ``eval_fraction`` of its last stage's training split,
held out by task-id hash; ``test``: the data's test split), teacher-forced on the code tokens only:

* ``true``: the prompt the model is prompted with at generation time (``NL <sep>``, with the
  retrieved commands first for a retrieval-augmented run);
* ``shuffled``: the same code after another pair's prompt (a seeded derangement);
* ``empty``: after an empty utterance (``<sep>`` alone; retrieval-augmented runs: no retrieval).

Per condition: mean cross-entropy per code token (nats), token accuracy (argmax = next token), and
with ``--generate N`` the greedy exact match of the first N pairs (whitespace-stripped). The gap
``shuffled - true`` in loss is how much the NL conditions the output: zero means the model writes
the language of the commands and ignores the request. Writes ``diagnostics.{json,md}`` (default into
``DIR/diagnostics``). ``--checkpoints`` adds the true-prompt CE at every checkpoint the run kept beside its
training loss: the step where held-out CE turns up is where the run starts to memorise the pairs.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header_md, machine_info, md_table  # noqa: E402


def pairs_of(run: Any, split: str, limit: int | None, seed: int) -> list[Any]:
    """The (nl, code) records to diagnose: held-out training pairs or the data's test split."""
    import dataclasses

    from nl2code.data.pipeline import load_splits
    from nl2code.train.config import trained_data

    data = trained_data(run.config)
    if split == "heldout":
        recs = load_splits(data)[1]
    else:
        recs = load_splits(dataclasses.replace(data, split="test", eval_split=None, eval_fraction=0.0))[0]
    recs = [r for r in recs if r.nl and r.code]
    if limit and limit < len(recs):
        keep = set(random.Random(seed).sample(range(len(recs)), limit))
        recs = [r for i, r in enumerate(recs) if i in keep]
    return recs


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation of range(n) with no fixed point (n >= 2)."""
    rng = random.Random(seed)
    while True:
        perm = list(range(n))
        rng.shuffle(perm)
        if all(p != i for i, p in enumerate(perm)):
            return perm


@torch.no_grad()
def teacher_forced(model: Any, prompts: list[list[int]], targets: list[list[int]], pad_id: int) -> dict[str, float]:
    """Token-weighted CE and accuracy of ``targets`` after ``prompts`` (rows too long for the model are
    cut from the left of the prompt, as generation does)."""
    from nl2code.data.collate import Example, pad_collate
    from nl2code.objectives.autoregressive import CausalLMObjective

    objective = CausalLMObjective()
    max_len = model.cfg.max_seq_len
    rows = []
    for p, t in zip(prompts, targets, strict=True):
        ids = [*p, *t][-max_len:]
        mask = ([False] * len(p) + [True] * len(t))[-max_len:]
        rows.append(Example(np.array(ids), np.array(mask)))
    total = {"ce": 0.0, "acc": 0.0}
    n_tokens = 0
    gen = torch.Generator().manual_seed(0)
    for i in range(0, len(rows), 32):
        batch = pad_collate(rows[i : i + 32], pad_id)  # loss_mask marks the target tokens themselves
        w = objective.weight(batch)
        _, metrics = objective(model, batch, gen)
        total["ce"] += float(metrics["ce"]) * w
        total["acc"] += float(metrics["acc"]) * w
        n_tokens += w
    return {"ce": total["ce"] / max(n_tokens, 1), "token_acc": total["acc"] / max(n_tokens, 1), "tokens": n_tokens}


def over_checkpoints(run: Any, run_dir: Path, prompts: list[list[int]], targets: list[list[int]]) -> list[dict]:
    """CE and token accuracy with the true prompts at every checkpoint the run kept (``train.ckpt_every``):
    where held-out CE turns up while the training loss still falls, the run has begun to memorise."""
    from safetensors.torch import load_model

    from nl2code.train.checkpoint import MODEL_FILE, STATE_FILE, list_checkpoints

    train_loss = {}
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("split") == "train" and "loss" in row:
                train_loss[row["step"]] = row["loss"]
    rows = []
    for step, ckpt in list_checkpoints(run_dir / "checkpoints"):
        load_model(run.model, str(ckpt / MODEL_FILE))
        elapsed = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)["elapsed_s"]
        logged = [s for s in train_loss if s <= step]
        m = teacher_forced(run.model, prompts, targets, run.tokenizer.pad_id)
        rows.append(
            {"step": step, "minutes": round(elapsed / 60, 1), "ce": m["ce"], "token_acc": m["token_acc"],
             "train_loss": train_loss[max(logged)] if logged else None}
        )  # fmt: skip
    return rows


def diagnose(
    run_dir: Path, split: str, limit: int | None, generate: int, seed: int, checkpoints: bool = False
) -> dict[str, Any]:
    from nl2code.api import GenerationConfig, load_run
    from nl2code.generation.autoregressive import ARGenerator

    run = load_run(run_dir)
    run.model.eval()
    gen = ARGenerator(run)
    if gen.prompt_format != "nl":
        raise SystemExit(f"{run_dir}: not an NL -> code run (data.format must be nl_code)")
    tok = run.tokenizer
    recs = pairs_of(run, split, limit, seed)
    if len(recs) < 2:
        raise SystemExit(f"{run_dir}: fewer than 2 {split} pairs")
    true_prompts = [gen.encode_prompt(r.nl) for r in recs]
    perm = derangement(len(recs), seed)
    conditions = {
        "true": true_prompts,
        "shuffled": [true_prompts[j] for j in perm],
        "empty": [[tok.sep_id]],
    }
    conditions["empty"] = conditions["empty"] * len(recs)
    targets = [[*tok.encode(r.code), tok.eos_id] for r in recs]  # exactly as data.format nl_code trains
    out: dict[str, Any] = {
        "run": str(run_dir),
        "split": split,
        "pairs": len(recs),
        "seed": seed,
        "retrieval_k": gen.retrieval_k,
        "conditions": {},
    }
    start = time.monotonic()
    for name, prompts in conditions.items():
        out["conditions"][name] = teacher_forced(run.model, prompts, targets, tok.pad_id)
    if generate:
        cfg = GenerationConfig(n=1, temperature=0.0, max_new_tokens=64, stop=("\n",), batch_size=32)
        golds = [r.code.strip() for r in recs[:generate]]
        for name in ("true", "shuffled"):
            cands = gen.decode_ids(conditions[name][:generate], cfg, [tok.eos_id])
            hits = [c[0].text.strip() == g for c, g in zip(cands, golds, strict=True)]
            out["conditions"][name]["exact_match"] = sum(hits) / len(hits)
            out["conditions"][name]["generated"] = len(hits)
            if name == "true":
                out["examples"] = [
                    {"nl": r.nl.strip(), "gold": g, "greedy": c[0].text.strip()}
                    for r, g, c in list(zip(recs[:generate], golds, cands, strict=True))[:5]
                ]
    if checkpoints:
        out["checkpoints"] = over_checkpoints(run, run_dir, true_prompts, targets)
    c = out["conditions"]
    out["nl_gap_ce"] = c["shuffled"]["ce"] - c["true"]["ce"]
    out["nl_gap_token_acc"] = c["true"]["token_acc"] - c["shuffled"]["token_acc"]
    out["seconds"] = round(time.monotonic() - start, 1)
    return out


def markdown(res: dict[str, Any], command: str, machine: dict[str, Any]) -> str:
    notes = [
        f"Run `{res['run']}`, {res['pairs']} {res['split']} pairs (seed {res['seed']}), "
        f"retrieval_k {res['retrieval_k']}; teacher-forced on the code tokens; {res['seconds']} s.",
        f"NL gap: shuffled - true CE = {res['nl_gap_ce']:.3f} nats/token; "
        f"true - shuffled token accuracy = {100 * res['nl_gap_token_acc']:.1f} points.",
    ]
    heads = ["prompt", "CE (nats/token)", "token acc %", "greedy exact %"]
    rows = []
    for name, m in res["conditions"].items():
        em = f"{100 * m['exact_match']:.1f} (of {m['generated']})" if "exact_match" in m else ""
        rows.append([name, f"{m['ce']:.3f}", f"{100 * m['token_acc']:.1f}", em])
    lines = [
        header_md("AR diagnostics: does the NL condition the code?", command, machine, notes),
        "",
        md_table(heads, rows),
    ]
    if res.get("checkpoints"):
        lines += [
            "",
            "Per checkpoint, true prompts (the training loss is the last one logged at or before the step):",
            "",
            md_table(
                ["step", "minutes", "train loss", "CE (nats/token)", "token acc %"],
                [
                    [
                        r["step"],
                        r["minutes"],
                        "" if r["train_loss"] is None else f"{r['train_loss']:.3f}",
                        f"{r['ce']:.3f}",
                        f"{100 * r['token_acc']:.1f}",
                    ]
                    for r in res["checkpoints"]
                ],
            ),  # fmt: skip
        ]
    for ex in res.get("examples", []):
        lines.append(f"\n- NL: {ex['nl']}\n  - gold: `{ex['gold']}`\n  - greedy: `{ex['greedy']}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="run directory (nl2code train --run-dir)")
    ap.add_argument("--split", choices=("heldout", "test"), default="heldout")
    ap.add_argument("--limit", type=int, default=0, help="a seeded random sample of N pairs (0 = all)")
    ap.add_argument("--generate", type=int, default=0, help="greedy exact match on the first N pairs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--checkpoints", action="store_true", help="also CE and token accuracy at every checkpoint the run kept"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="output folder (default RUN/diagnostics)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/ar_diagnostics.py " + " ".join(argv if argv is not None else sys.argv[1:])
    res = diagnose(args.run, args.split, args.limit or None, args.generate, args.seed, args.checkpoints)
    out = args.out or args.run / "diagnostics"
    out.mkdir(parents=True, exist_ok=True)
    (out / "diagnostics.json").write_text(json.dumps(res, indent=2) + "\n")
    text = markdown(res, command, machine_info())
    (out / "diagnostics.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
