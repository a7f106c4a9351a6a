"""Beam search for causal LMs (one prompt at a time, KV-cached through ``StepDecoder``).

Hypotheses are scored by summed log-probability; finished ones are ranked by
``logprob / length ** length_penalty`` (1.0 = mean token log-probability, 0 = plain sum). Each step
expands every live beam and keeps the best ``2 * num_beams`` continuations: those ending in a stop
token or stop string (and ranked within the first ``num_beams``) become finished hypotheses, the
best ``num_beams`` others live on. The search ends when the token budget is spent, no beam is left,
or ``num_beams`` hypotheses are finished and none of the live beams scores better than the worst
of them at its current length (the usual heuristic).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from nl2code.sampling.autoregressive import Sample
from nl2code.sampling.decoder import StepDecoder


def normalized(logprob: float, length: int, length_penalty: float) -> float:
    """Beam ranking score of a hypothesis with ``length`` scored tokens."""
    return logprob / max(length, 1) ** length_penalty


@torch.no_grad()
def beam_search(
    model: nn.Module,
    prompt: list[int],
    *,
    num_beams: int,
    n_return: int = 1,
    max_new_tokens: int = 128,
    stop_ids: Sequence[int] = (),
    stop: Callable[[list[int]], bool] | None = None,
    accept: Callable[[list[int]], bool] | None = None,
    length_penalty: float = 1.0,
    pad_id: int = 0,
    use_cache: bool = True,
    prefix_lm: bool = False,
) -> list[Sample]:
    """The ``n_return`` best hypotheses (best first) continuing ``prompt``.

    Args:
        num_beams: live beams kept per step (>= n_return).
        stop_ids: tokens that finish a hypothesis (scored, not included in ``ids``).
        stop: finishes a hypothesis when it returns True for its tokens (stop strings).
        accept: constrained stopping: a hypothesis may end on a stop token or stop string only where
            this returns True for its tokens (e.g. the text parses); elsewhere that continuation is
            dropped and the beam goes on with its other tokens. Hypotheses cut by the token budget
            are returned as they are.
        length_penalty: exponent of the length normalisation (see the module docstring).
    """
    if num_beams < 1 or not 1 <= n_return <= num_beams:
        raise ValueError(f"need 1 <= n_return <= num_beams, got n_return={n_return}, num_beams={num_beams}")
    stop_set = set(stop_ids)
    dec = StepDecoder(
        model, [prompt], pad_id=pad_id, max_new_tokens=max_new_tokens, use_cache=use_cache, prefix_lm=prefix_lm
    )
    logits = dec.start()  # (1, V): a single live beam to start, so no duplicates
    alive: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[Sample] = []

    def rank(s: Sample) -> float:
        return normalized(s.logprob, s.n_scored, length_penalty)

    for step in range(max_new_tokens):
        vocab = logits.shape[-1]
        totals = logits.log_softmax(-1) + torch.tensor([lp for _, lp in alive], device=logits.device)[:, None]
        pool = 2 * num_beams
        if accept is not None:
            refused = [b for b, (ids, _) in enumerate(alive) if not accept(ids)]
            if refused and stop_ids:  # these may not end here: their stop tokens leave the ranking
                rows = torch.tensor(refused, device=totals.device)[:, None]
                totals[rows, torch.tensor(sorted(stop_set), device=totals.device)[None, :]] = -torch.inf
            pool += 2 * num_beams  # room for continuations refused at a stop string
        scores, flat = totals.flatten().topk(min(pool, totals.numel()))
        next_alive: list[tuple[list[int], float]] = []
        parents, tokens = [], []
        for r, (score, index) in enumerate(zip(scores.tolist(), flat.tolist())):
            parent, tok = divmod(index, vocab)
            ids = alive[parent][0]
            if tok in stop_set:
                if score == -torch.inf:  # a refused stop token, reached only when little else is left
                    continue
                if r < num_beams:
                    finished.append(Sample(list(ids), score, len(ids) + 1, "stop_token"))
                continue
            grown = [*ids, tok]
            if stop is not None and stop(grown):
                if accept is not None and not accept(grown):
                    continue
                if r < num_beams:
                    finished.append(Sample(grown, score, len(grown), "stop_string"))
                continue
            next_alive.append((grown, score))
            parents.append(parent)
            tokens.append(tok)
            if len(next_alive) == num_beams:
                break
        finished = sorted(finished, key=rank, reverse=True)[:num_beams]
        alive = next_alive
        if not alive:
            break
        if len(finished) == num_beams:
            best_alive = max(normalized(lp, len(ids), length_penalty) for ids, lp in alive)
            if rank(finished[-1]) >= best_alive:
                alive = []
                break
        if step < max_new_tokens - 1:
            dec.select(parents)
            logits = dec.step(torch.tensor(tokens))
    finished += [Sample(ids, lp, len(ids), "length") for ids, lp in alive]  # out of budget
    return sorted(finished, key=rank, reverse=True)[:n_return]
