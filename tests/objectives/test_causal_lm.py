"""Next-token cross-entropy: matches a hand computation, ignores padding and prompts, overfits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from head_equiv import assert_chunked_equals_plain

from nl2code.config import ConfigError, from_dict
from nl2code.data.collate import Example, pad_collate
from nl2code.models import CodeGenConfig, build_model
from nl2code.objectives import OBJECTIVES, CausalLMConfig, CausalLMObjective, build_objective
from nl2code.objectives.base import Objective


def tiny():
    cfg = CodeGenConfig(vocab_size=20, d_model=16, n_layers=1, n_heads=2, max_seq_len=16)
    return build_model(cfg, generator=torch.Generator().manual_seed(0))


def ex(ids, mask=None):
    return Example(np.array(ids), np.array(mask if mask is not None else [True] * len(ids)))


def test_loss_is_mean_ce_over_target_tokens(generator):
    model, obj = tiny(), CausalLMObjective()
    batch = pad_collate([ex([3, 4, 5, 6], [False, False, True, True]), ex([7, 8])], pad_id=0)
    loss, metrics = obj(model, batch, generator)
    logits = model(batch.input_ids).logits
    # targets: row 0 predicts 5 (from pos 1) and 6 (pos 2); row 1 predicts 8 (pos 0)
    picked = torch.stack([logits[0, 1], logits[0, 2], logits[1, 0]])
    expected = F.cross_entropy(picked, torch.tensor([5, 6, 8]))
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(metrics["ce"], expected)
    assert obj.weight(batch) == 3
    assert 0.0 <= float(metrics["acc"]) <= 1.0


def test_chunked_head_path_equals_the_logits_path():
    batch = pad_collate([ex([3, 4, 5, 6, 7], [False, True, True, True, True]), ex([7, 8, 9])], pad_id=0)

    def run(chunked):
        model = tiny()
        objective = CausalLMObjective(CausalLMConfig(chunked_head=chunked))
        return model, *objective(model, batch, torch.Generator().manual_seed(0))

    assert_chunked_equals_plain(run)


def test_padding_does_not_change_the_loss(generator):
    model, obj = tiny(), CausalLMObjective()
    a = pad_collate([ex([3, 4, 5])], pad_id=0)
    b = pad_collate([ex([3, 4, 5]), ex([9] * 9, [False] * 9)], pad_id=0)  # wider, and no targets
    torch.testing.assert_close(obj(model, a, generator)[0], obj(model, b, generator)[0])


def test_overfits_one_batch(generator):
    model, obj = tiny(), CausalLMObjective()
    batch = pad_collate([ex([1, 2, 3, 4, 5, 6]), ex([6, 5, 4, 3, 2])], pad_id=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
    for _ in range(80):
        loss, metrics = obj(model, batch, generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 and metrics["acc"] == 1.0


def test_greedy_preview_continues_a_learned_pattern(generator):
    model, obj = tiny(), CausalLMObjective()
    batch = pad_collate([ex([1, 2, 3, 4, 5, 9])], pad_id=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
    for _ in range(80):
        loss, _ = obj(model, batch, generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    out = obj.preview(model, [[1, 2]], max_new_tokens=10, eos_id=9, generator=generator)
    assert out == [[3, 4, 5]]  # stops at eos


def test_aux_loss_is_added(generator):
    class WithAux(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tiny()

        def forward(self, ids):
            out = self.inner(ids)
            out.aux_loss = torch.tensor(0.5)
            return out

    model, obj = WithAux(), CausalLMObjective()
    batch = pad_collate([ex([1, 2, 3])], pad_id=0)
    loss, metrics = obj(model, batch, generator)
    torch.testing.assert_close(loss, metrics["ce"] + 0.5)
    assert metrics["aux_loss"] == 0.5


def test_registry_and_config():
    assert OBJECTIVES["causal_lm"] == (CausalLMConfig, CausalLMObjective)
    obj = build_objective(from_dict(CausalLMConfig, {"label_smoothing": 0.1}))
    assert isinstance(obj, Objective) and obj.cfg.label_smoothing == 0.1
    with pytest.raises(ConfigError, match="label_smoothing"):
        from_dict(CausalLMConfig, {"label_smoothing": 1.5})
    with pytest.raises(ValueError, match="no objective registered"):
        build_objective(object())
    with pytest.raises(TypeError):
        Objective()  # abstract: an objective must define __call__
