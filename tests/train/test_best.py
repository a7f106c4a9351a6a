"""train.keep_best: the run's weights are those of the evaluation with the lowest held-out loss."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch
from test_loop import PAD, VOCAB, batches, config, examples, model

from nl2code.data.collate import Example
from nl2code.data.pipeline import eval_batches
from nl2code.objectives import CausalLMObjective
from nl2code.train.best import BestWeights
from nl2code.train.checkpoint import list_checkpoints
from nl2code.train.config import TrainConfig
from nl2code.train.loop import EvalSpec, train


def backwards(n: int = 8) -> list[Example]:
    """Counting down: the more the model learns to count up, the worse it does here (a held-out set that
    rises after the first steps, like a model that memorises its pairs)."""
    out = []
    for start in range(n):
        ids = (VOCAB - 2 - start - np.arange(12)) % (VOCAB - 1) + 1
        out.append(Example(ids, np.ones(len(ids), dtype=bool)))
    return out


def test_keep_best_writes_the_weights_of_the_lowest_eval_loss(tmp_path):
    cfg = config(max_steps=24, eval_every=4, ckpt_every=8)
    held = backwards()
    spec = EvalSpec(batches=lambda: eval_batches(held, batch_size=4, pad_id=PAD, limit=2))
    lines = []
    for name, keep in (("last", False), ("best", True)):
        run_cfg = TrainConfig(**{**cfg.__dict__, "keep_best": keep})
        train(model(), CausalLMObjective(), batches(run_cfg, examples()), run_cfg, tmp_path / name,
              device=torch.device("cpu"), evaluation=spec, say=lines.append)  # fmt: skip
    recs = [json.loads(x) for x in (tmp_path / "best" / "metrics.jsonl").read_text().splitlines()]
    evals = {r["step"]: r["loss"] for r in recs if r["split"] == "eval"}
    best_step = min(evals, key=evals.get)
    assert 4 <= best_step < 24 and evals[24] > evals[best_step]  # the held-out loss rose after best_step
    assert json.loads((tmp_path / "best" / "best" / "best.json").read_text())["step"] == best_step
    weights = (tmp_path / "best" / "model.safetensors").read_bytes()
    assert weights == (tmp_path / "best" / "best" / "model.safetensors").read_bytes()
    assert weights != (tmp_path / "last" / "model.safetensors").read_bytes()  # without keep_best: the last
    last_ckpt = list_checkpoints(tmp_path / "best" / "checkpoints")[-1]
    assert last_ckpt[0] == 24  # checkpoints keep the last state, so --resume continues training
    assert any(f"weights of step {best_step}" in x for x in lines)


def test_best_record_survives_resume_unless_it_lies_beyond_the_resumed_step(tmp_path):
    m = model()
    live = lambda: contextlib.nullcontext(m)  # noqa: E731
    best = BestWeights(m, tmp_path, 0)
    assert best.offer(2.0, 4, live) and not best.offer(2.5, 8, live) and not best.offer(float("nan"), 9, live)
    assert best.offer(1.5, 12, live) and best.step == 12
    assert BestWeights(m, tmp_path, 12).step == 12 and BestWeights(m, tmp_path, 16).loss == 1.5
    assert BestWeights(m, tmp_path, 8).step is None  # resumed before it: those steps are replayed
    assert not BestWeights(m, tmp_path / "none", 0).write_to(tmp_path / "w.safetensors", print, "main")


def test_keep_best_needs_evaluations():
    with pytest.raises(ValueError, match="eval_every"):
        TrainConfig(keep_best=True, eval_every=0)
