"""A tiny AR model learns a small NL -> code mapping, and uses the NL to do it (issue #18)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nl2code.data.collate import Example, pad_collate
from nl2code.data.tokenizer import CodeTokenizer
from nl2code.models.codegen import CodeGenConfig, CodeGenLM
from nl2code.objectives.autoregressive import CausalLMObjective
from nl2code.sampling.autoregressive import sample

OPS = [
    ("delete the file {}", "rm {}"),
    ("show the contents of {}", "cat {}"),
    ("count the lines in {}", "wc -l {}"),
    ("make a directory called {}", "mkdir -p {}"),
]
NAMES = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "omega",
    "kappa",
    "sigma",
    "theta",
    "notes",
    "data",
    "logs",
    "src",
    "build",
    "tmp",
    "cache",
    "out",
]


def pairs() -> list[tuple[str, str]]:
    """64 pairs: the code depends on both the verb phrase and the name in the NL."""
    return [(nl.format(n), code.format(n)) for nl, code in OPS for n in NAMES]


def greedy(model: CodeGenLM, tok: CodeTokenizer, prompts: list[list[int]]) -> list[str]:
    out = sample(model, prompts, n=1, max_new_tokens=16, temperature=0.0, stop_ids=[tok.eos_id], pad_id=tok.pad_id)
    return [tok.decode(group[0].ids).strip() for group in out]


@pytest.fixture(scope="module")
def trained() -> tuple[CodeGenLM, CodeTokenizer, list[tuple[str, str]]]:
    """A tiny model trained on the 64 pairs: ~15 s of CPU on one thread (300 full-batch steps)."""
    data = pairs()
    tok = CodeTokenizer.train([t for p in data for t in p], vocab_size=320)
    rows = []
    for nl, code in data:
        nl_ids, code_ids = tok.encode(nl), tok.encode(code)
        ids = [*nl_ids, tok.sep_id, *code_ids, tok.eos_id]
        mask = [False] * (len(nl_ids) + 1) + [True] * (len(code_ids) + 1)  # loss on the code only
        rows.append(Example(np.array(ids), np.array(mask)))
    batch = pad_collate(rows, tok.pad_id)
    gen = torch.Generator().manual_seed(0)
    cfg = CodeGenConfig(vocab_size=tok.vocab_size, d_model=64, n_layers=2, n_heads=4, max_seq_len=48, mlp="swiglu")
    model = CodeGenLM(cfg, generator=gen)
    objective = CausalLMObjective()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for _ in range(300):
        loss, metrics = objective(model, batch, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, tok, data


def shuffled_order(n: int) -> list[int]:
    """A seeded permutation in which no prompt keeps its own code."""
    perm = list(range(n))
    random.Random(0).shuffle(perm)
    return [p if p != i else (i + 1) % n for i, p in enumerate(perm)]


def test_tiny_ar_model_learns_and_uses_the_nl(trained):
    model, tok, data = trained
    prompts = [[*tok.encode(nl), tok.sep_id] for nl, _ in data]
    golds = [code for _, code in data]
    true_em = np.mean([p == g for p, g in zip(greedy(model, tok, prompts), golds)])
    perm = shuffled_order(len(data))
    shuffled_em = np.mean([p == g for p, g in zip(greedy(model, tok, [prompts[j] for j in perm]), golds)])
    assert true_em >= 0.9, f"exact match with the true NL {true_em:.2f}"
    assert shuffled_em <= 0.1, f"exact match with shuffled NL {shuffled_em:.2f}: the NL is not what is used"


def test_diagnostics_see_the_nl_gap(trained):
    """benchmarks/ar_diagnostics.py's teacher-forced scoring: after training, the code is far more
    likely after its own NL than after another pair's."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from ar_diagnostics import teacher_forced

    model, tok, data = trained
    prompts = [[*tok.encode(nl), tok.sep_id] for nl, _ in data]
    targets = [[*tok.encode(code), tok.eos_id] for _, code in data]
    true = teacher_forced(model, prompts, targets, tok.pad_id)
    shuffled = teacher_forced(model, [prompts[j] for j in shuffled_order(len(data))], targets, tok.pad_id)
    assert true["tokens"] == shuffled["tokens"] == sum(len(t) for t in targets)
    assert true["token_acc"] >= 0.9 and true["ce"] < 0.5
    assert shuffled["ce"] - true["ce"] > 1.0 and shuffled["token_acc"] < true["token_acc"] - 0.2


def test_diagnostics_follow_held_out_ce_over_the_checkpoints(trained, tmp_path):
    """ar_diagnostics --checkpoints: each kept checkpoint is scored with its own weights, beside the last
    training loss logged at or before its step."""
    import json
    from types import SimpleNamespace

    from safetensors.torch import save_model

    from nl2code.models.codegen import CodeGenLM
    from nl2code.train.checkpoint import MODEL_FILE, STATE_FILE, checkpoint_path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from ar_diagnostics import over_checkpoints

    model, tok, data = trained
    fresh = CodeGenLM(model.cfg, generator=torch.Generator().manual_seed(1))
    for step, weights in ((10, fresh), (300, model)):
        ckpt = checkpoint_path(tmp_path / "checkpoints", step)
        ckpt.mkdir(parents=True)
        save_model(weights, str(ckpt / MODEL_FILE))
        torch.save({"elapsed_s": 6.0 * step}, ckpt / STATE_FILE)
    logged = [{"split": "train", "step": 5, "loss": 4.0}, {"split": "train", "step": 300, "loss": 0.1}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logged))
    prompts = [[*tok.encode(nl), tok.sep_id] for nl, _ in data]
    targets = [[*tok.encode(code), tok.eos_id] for _, code in data]
    scored = CodeGenLM(model.cfg, generator=torch.Generator().manual_seed(2)).eval()
    rows = over_checkpoints(SimpleNamespace(model=scored, tokenizer=tok), tmp_path, prompts, targets)
    assert [(r["step"], r["minutes"], r["train_loss"]) for r in rows] == [(10, 1.0, 4.0), (300, 30.0, 0.1)]
    assert rows[0]["ce"] > 2.0 > 0.5 > rows[1]["ce"] and rows[1]["token_acc"] >= 0.9
