"""Parameter groups, the warm-up + cosine schedule, and the weight EMA."""

from __future__ import annotations

import math

import pytest
import torch

from nl2code.models import CodeGenConfig, build_model
from nl2code.train.config import TrainConfig
from nl2code.train.optim import EMA, build_optimizer, lr_at, param_groups


def tiny():
    return build_model(CodeGenConfig(vocab_size=20, d_model=16, n_layers=1, n_heads=2, max_seq_len=8))


def test_decay_only_on_matrices_and_embeddings():
    model = tiny()
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    ids = {id(p) for g in (decay, no_decay) for p in g["params"]}
    assert ids == {id(p) for p in model.parameters()}  # every parameter once (tied weights too)
    assert any(p is model.embed.weight for p in decay["params"])
    assert any(p is model.norm.weight for p in no_decay["params"])
    opt = build_optimizer(model, TrainConfig(betas=(0.8, 0.9)), torch.device("cpu"))
    assert opt.param_groups[0]["betas"] == (0.8, 0.9)


def test_warmup_then_cosine_to_min_lr():
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)  # half-way down the cosine
    assert lr_at(110, cfg) == pytest.approx(0.1) and lr_at(500, cfg) == pytest.approx(0.1)
    values = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    no_warmup = TrainConfig(lr=1.0, min_lr=0.0, warmup_steps=0, max_steps=4)
    assert [lr_at(s, no_warmup) for s in range(3)] == pytest.approx([1.0, 0.5 + 0.5 * math.cos(math.pi / 4), 0.5])


def test_ema_tracks_and_swaps():
    model = tiny()
    ema = EMA(model, decay=0.5)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(2.0)
    ema.update(model)
    for n in start:
        torch.testing.assert_close(ema.shadow[n], start[n] + 1.0)
    with ema.swapped_in(model):
        torch.testing.assert_close(model.embed.weight, start["embed.weight"] + 1.0)
    torch.testing.assert_close(model.embed.weight, start["embed.weight"] + 2.0)  # live weights back
    fresh = EMA(tiny(), 0.5)
    fresh.load_state_dict(ema.state_dict())
    assert all(torch.equal(fresh.shadow[k], ema.shadow[k]) for k in ema.shadow)
    with pytest.raises(ValueError, match="does not match"):
        fresh.load_state_dict({"x": torch.zeros(1)})


def test_lr_follows_the_clock_under_a_wall_clock_budget():
    cfg = TrainConfig(max_steps=10_000, warmup_steps=10, lr=1e-3, min_lr=1e-4, max_minutes=1.0)
    assert lr_at(5, cfg, elapsed_s=50.0) == pytest.approx(6e-4)  # warm-up stays step-based
    assert lr_at(20, cfg, elapsed_s=30.0) == pytest.approx(1e-4 + 0.45e-3 * (1 + math.cos(math.pi / 2)))
    assert lr_at(20, cfg, elapsed_s=60.0) == pytest.approx(1e-4)  # budget spent: the decay has ended
    assert lr_at(20, cfg, elapsed_s=600.0) == pytest.approx(1e-4)
    steps_only = TrainConfig(max_steps=10_000, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    assert lr_at(20, steps_only, elapsed_s=60.0) == pytest.approx(lr_at(20, steps_only))  # clock ignored
