"""Ensemble: the mixture of causal LMs' next-token distributions, decoded by the samplers unchanged."""

from __future__ import annotations

import math

import pytest
import torch

from nl2code.models import CodeGenConfig, build_model
from nl2code.models.ensemble import Ensemble
from nl2code.sampling.autoregressive import sample
from nl2code.sampling.beam import beam_search


def lm(seed: int, **kw):
    cfg = CodeGenConfig(**{"vocab_size": 40, "d_model": 32, "n_layers": 2, "n_heads": 4, "max_seq_len": 32, **kw})
    return build_model(cfg, generator=torch.Generator().manual_seed(seed)).eval()


def test_logits_are_the_log_of_the_members_mean_probability(generator):
    a, b = lm(0), lm(1, copy_head=True)
    ids = torch.randint(1, 40, (2, 7), generator=generator)
    with torch.no_grad():
        want = torch.log((a(ids).logits.softmax(-1) + b(ids).logits.softmax(-1)) / 2)
        got = Ensemble([a, b])(ids).logits
        last = Ensemble([a, b])(ids, logits_to_keep=1).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert last.shape == (2, 1, 40) and torch.allclose(last, want[:, -1:], atol=1e-5)
    assert torch.allclose(got.exp().sum(-1), torch.ones(2, 7), atol=1e-5)  # a distribution at every position


def test_a_model_with_itself_samples_what_the_model_samples():
    model = lm(0)
    prompts = [[3, 4, 5], [7, 8]]
    alone = sample(model, prompts, n=3, max_new_tokens=8, seed=5)
    doubled = sample(Ensemble([model, model]), prompts, n=3, max_new_tokens=8, seed=5)
    assert [[s.ids for s in row] for row in doubled] == [[s.ids for s in row] for row in alone]


def test_the_cache_gives_what_recomputing_gives():
    ens = Ensemble([lm(0), lm(1), lm(2, copy_head=True)])
    prompts = [[3, 4, 5, 6], [7, 8]]  # left padding: the masks and positions go through every member
    cached = sample(ens, prompts, n=2, max_new_tokens=10, seed=1, use_cache=True)
    fresh = sample(ens, prompts, n=2, max_new_tokens=10, seed=1, use_cache=False)
    assert [[s.ids for s in r] for r in cached] == [[s.ids for s in r] for r in fresh]
    beams = beam_search(ens, [3, 4, 5], num_beams=3, n_return=3, max_new_tokens=6, use_cache=True)
    again = beam_search(ens, [3, 4, 5], num_beams=3, n_return=3, max_new_tokens=6, use_cache=False)
    assert [h.ids for h in beams] == [h.ids for h in again]
    assert all(math.isfinite(h.logprob) for h in beams)


def test_members_must_share_the_vocabulary_and_context():
    with pytest.raises(ValueError, match="vocab_size"):
        Ensemble([lm(0), lm(1, vocab_size=41)])
    with pytest.raises(ValueError, match="two models"):
        Ensemble([lm(0)])
