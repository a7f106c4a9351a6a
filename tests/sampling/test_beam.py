"""Beam search: finds the best hypothesis where greedy does not; cached == uncached; ranking."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from nl2code.models import CodeGenConfig, ModelOutput, build_model
from nl2code.sampling.autoregressive import sample
from nl2code.sampling.beam import beam_search

EOS = 1


class Markov(nn.Module):
    """A hand-built LM: the next-token distribution depends on the last token only."""

    def __init__(self, probs: torch.Tensor):
        super().__init__()
        self.register_buffer("logp", probs.clamp_min(1e-12).log())
        self.dummy = nn.Parameter(torch.zeros(1))  # samplers read the device from a parameter

    def forward(self, ids, attention_mask=None, position_ids=None, cache=None, prefix_mask=None) -> ModelOutput:
        return ModelOutput(logits=self.logp[ids], hidden=self.logp[ids])


def markov() -> Markov:
    # tokens: 0 pad, 1 eos, 2 "A", 3 "B", 4 "C", 5 start
    p = torch.zeros(6, 6)
    p[5, 2], p[5, 3] = 0.6, 0.4  # greedy takes A...
    p[2, 4], p[2, EOS], p[2, 2] = 0.34, 0.33, 0.33  # ...but everything after A is uncertain
    p[3, EOS], p[3, 4] = 0.9, 0.1  # B then eos: 0.4 * 0.9 = 0.36 beats any A path (<= 0.6 * 0.34)
    p[4, EOS], p[4, 4] = 0.5, 0.5
    p[0, EOS] = p[1, EOS] = 1.0
    return Markov(p)


def brute_force_best(model: Markov, prompt: list[int], max_len: int, accept=None) -> tuple[list[int], float]:
    """The highest-probability finished sequence (ending in eos) of at most ``max_len`` new tokens (that
    ``accept`` accepts, when given)."""
    best, best_lp = None, -math.inf
    for n in range(0, max_len):
        for seq in itertools.product(range(2, 6), repeat=n):
            toks = [*prompt, *seq, EOS]
            lp = sum(float(model.logp[a, b]) for a, b in zip(toks, toks[1:]))
            if lp > best_lp and (accept is None or accept(list(seq))):
                best, best_lp = list(seq), lp
    return best, best_lp


def test_beam_search_finds_the_highest_scoring_sequence_greedy_misses():
    model = markov()
    greedy = sample(model, [[5]], temperature=0.0, max_new_tokens=6, stop_ids=[EOS], use_cache=False)[0][0]
    assert greedy.ids[0] == 2  # greedy commits to A
    best, best_lp = brute_force_best(model, [5], 5)
    assert best == [3]
    beams = beam_search(model, [5], num_beams=2, n_return=2, max_new_tokens=6, stop_ids=[EOS],
                        length_penalty=0.0, use_cache=False)
    assert beams[0].ids == best and beams[0].logprob == pytest.approx(best_lp)
    assert beams[0].finish == "stop_token" and beams[0].logprob > greedy.logprob
    assert beams[0].logprob >= beams[1].logprob


def test_accept_decides_where_hypotheses_may_end():
    model = markov()

    def ends_in_c(ids):
        return bool(ids) and ids[-1] == 4

    best, best_lp = brute_force_best(model, [5], 5, accept=ends_in_c)
    assert best == [2, 4]  # the unconstrained best, [B], is refused
    kw = dict(num_beams=3, n_return=3, max_new_tokens=6, stop_ids=[EOS], length_penalty=0.0, use_cache=False)
    beams = beam_search(model, [5], accept=ends_in_c, **kw)
    assert beams[0].ids == best and beams[0].logprob == pytest.approx(best_lp)
    assert all(b.finish == "stop_token" and ends_in_c(b.ids) for b in beams)
    refused = beam_search(model, [5], accept=lambda ids: False, **kw)
    assert [b.finish for b in refused] == ["length"] * 3 and all(len(b.ids) == 6 for b in refused)
    # a stop string is held to the same rule: "ends after C" never holds for a hypothesis ending in A
    stopped = beam_search(model, [5], stop=lambda ids: ids[-1] == 2 and len(ids) > 1, accept=ends_in_c, **kw)
    assert all(ends_in_c(b.ids) for b in stopped if b.finish != "length")


def test_length_penalty_ranks_by_mean_log_probability():
    model = markov()
    beams = beam_search(model, [5], num_beams=4, n_return=4, max_new_tokens=6, stop_ids=[EOS],
                        length_penalty=1.0, use_cache=False)
    means = [b.logprob / b.n_scored for b in beams]
    assert means == sorted(means, reverse=True) and len({tuple(b.ids) for b in beams}) == 4


def test_beam_search_with_cache_equals_without():
    model = build_model(CodeGenConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, max_seq_len=32),
                        generator=torch.Generator().manual_seed(0)).eval()
    kw = dict(num_beams=4, n_return=3, max_new_tokens=10, stop_ids=[1, 2, 3])
    a, b = beam_search(model, [5, 6, 7], **kw), beam_search(model, [5, 6, 7], use_cache=False, **kw)
    assert [s.ids for s in a] == [s.ids for s in b]
    assert [s.logprob for s in a] == pytest.approx([s.logprob for s in b], abs=1e-4)
    with pytest.raises(ValueError, match="n_return"):
        beam_search(model, [5], num_beams=2, n_return=3)
