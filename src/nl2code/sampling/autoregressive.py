"""Left-to-right decoding for causal LMs: greedy / temperature / top-k / top-p sampling with a KV
cache, stop tokens and stop strings, n samples per prompt. The run-directory backend that uses it
is :class:`nl2code.generation.autoregressive.ARGenerator`.

Randomness: every output row (prompt i, sample j) draws from its own ``torch.Generator`` seeded
from ``(seed, i, j)``, so a candidate does not depend on how prompts are batched, and the same
seed always gives the same output. Scores are log-probabilities under the model itself
(temperature 1, no filtering), whatever distribution the tokens were drawn from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from nl2code.sampling.decoder import StepDecoder
from nl2code.sampling.guidance import guided_logp
from nl2code.utils.seed import derive_seed

Finish = Literal["stop_token", "stop_string", "length"]


@dataclass
class Sample:
    """One generated continuation.

    Attributes:
        ids: generated tokens, without the stop token.
        logprob: summed model log-probability of the generated tokens (and of the stop token
            when it ended the sample).
        n_scored: number of tokens in ``logprob``.
        finish: what ended it: a stop token, a stop string, or the token budget.
    """

    ids: list[int]
    logprob: float
    n_scored: int
    finish: Finish

    @property
    def score(self) -> float:
        """Mean token log-probability (higher is better)."""
        return self.logprob / max(self.n_scored, 1)


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set all but the top-k / nucleus-p tokens of each row of ``logits`` (B, V) to -inf.

    top-k keeps exactly ``k`` tokens even when several share the k-th value (indices from
    ``topk``, not a threshold). top-p keeps the most likely tokens until their mass reaches
    ``top_p`` (the most likely token always stays).
    """
    out = logits
    if 0 < top_k < logits.shape[-1]:
        keep = logits.topk(top_k, dim=-1).indices
        out = torch.full_like(logits, float("-inf")).scatter(-1, keep, logits.gather(-1, keep))
    if top_p < 1.0:
        sorted_logits, order = out.sort(dim=-1, descending=True, stable=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the strictly more likely tokens
        drop_sorted = before >= top_p
        drop_sorted[:, 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        out = out.masked_fill(drop, float("-inf"))
    return out


def next_tokens(
    logits: torch.Tensor,
    generators: Sequence[torch.Generator],
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> torch.Tensor:
    """(B,) next tokens from ``logits`` (B, V): argmax when ``temperature == 0``, else a draw from
    the filtered, tempered distribution, row b using ``generators[b]``."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = filter_logits(logits / temperature, top_k, top_p).softmax(-1)
    # Exponential race: argmax p_i / E_i with E_i ~ Exp(1) is a draw from p (Gumbel-max in disguise).
    noise = torch.stack(
        [torch.empty(logits.shape[-1], device=logits.device).exponential_(generator=g) for g in generators]
    )
    return (probs / noise).argmax(-1)


@torch.no_grad()
def sample(
    model: nn.Module,
    prompts: list[list[int]],
    *,
    n: int = 1,
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    stop_ids: Sequence[int] = (),
    stop: Callable[[list[int]], bool] | None = None,
    seed: int = 0,
    pad_id: int = 0,
    use_cache: bool = True,
    prefix_lm: bool = False,
    prompt_offset: int = 0,
    guidance: float = 1.0,
    null_prompts: list[list[int]] | None = None,
) -> list[list[Sample]]:
    """``n`` continuations of each prompt (in draw order, not ranked).

    Args:
        model: a causal LM (see :class:`~nl2code.sampling.decoder.StepDecoder`).
        prompts: token id lists; they are left-padded into one batch.
        stop_ids: tokens that end a sample (not included in its ``ids``).
        stop: called with a sample's tokens after every step; True ends it (stop strings).
        seed: row (prompt i, sample j) draws from a generator seeded with
            ``(seed, prompt_offset + i, j)``; a caller splitting a prompt list into batches passes
            each batch's offset, so outputs do not depend on the split.
        use_cache: KV cache (False recomputes the full sequence each step; same output).
        prefix_lm: attend bidirectionally over each prompt (prefix-LM models).
        guidance, null_prompts: classifier-free guidance (Sanchez et al. 2023): tokens are drawn from
            ``log p_u + w (log p_c - log p_u)``, ``p_u`` the model's distribution continuing ``null_prompts[i]``
            (the empty request) in step with prompt i; ``w = 1`` (or no null prompts) is plain sampling.
            Scores stay the model's own conditional log-probabilities.
    """
    stop_set = set(stop_ids)
    guide = null_prompts is not None and guidance != 1
    if guide and len(null_prompts) != len(prompts):
        raise ValueError(f"{len(null_prompts)} null prompts for {len(prompts)} prompts")
    decoders = [
        StepDecoder(model, p, pad_id=pad_id, max_new_tokens=max_new_tokens, use_cache=use_cache, prefix_lm=prefix_lm)
        for p in ([prompts, null_prompts] if guide else [prompts])
    ]
    outs = [d.start() for d in decoders]
    rows = [(i, j) for i in range(len(prompts)) for j in range(n)]
    if n > 1:
        expand = torch.arange(len(prompts), device=outs[0].device).repeat_interleave(n)
        for d in decoders:
            d.select(expand)
        outs = [o.index_select(0, expand) for o in outs]
    logits = outs[0]
    gens = [torch.Generator(device=logits.device).manual_seed(derive_seed(seed, prompt_offset + i, j)) for i, j in rows]
    ids: list[list[int]] = [[] for _ in rows]
    logprob = [0.0] * len(rows)
    finish: list[Finish] = ["length"] * len(rows)
    active = list(range(len(rows)))  # decoder row -> output row
    for step in range(max_new_tokens):
        logp = logits.log_softmax(-1)
        drawn = guided_logp(logp, outs[1], guidance) if guide else logits
        chosen = next_tokens(drawn, [gens[r] for r in active], temperature, top_k, top_p)
        token_logp = logp.gather(-1, chosen[:, None])[:, 0]
        still = []
        for pos, (r, tok, lp) in enumerate(zip(active, chosen.tolist(), token_logp.tolist())):
            logprob[r] += lp
            if tok in stop_set:
                finish[r] = "stop_token"
                continue
            ids[r].append(tok)
            if stop is not None and stop(ids[r]):
                finish[r] = "stop_string"
                continue
            still.append(pos)
        if not still or step == max_new_tokens - 1:
            break
        if len(still) < len(active):  # drop finished rows from the batch
            for d in decoders:
                d.select(still)
            chosen = chosen[torch.tensor(still, device=chosen.device)]
            active = [active[p] for p in still]
        outs = [d.step(chosen) for d in decoders]
        logits = outs[0]
    out = [Sample(ids[r], logprob[r], len(ids[r]) + (finish[r] == "stop_token"), finish[r]) for r in range(len(rows))]
    return [out[i * n : (i + 1) * n] for i in range(len(prompts))]


def stop_checker(decode: Callable[[list[int]], str], stops: Sequence[str]) -> Callable[[list[int]], bool] | None:
    """A ``stop`` callback for :func:`sample`: True once the decoded tokens contain a stop string.

    Only the last few tokens are decoded each step: a stop string of L characters spans at most
    4 L byte-level tokens (plus one partial token on each side).
    """
    stops = [s for s in stops if s]
    if not stops:
        return None
    window = 4 * max(len(s) for s in stops) + 2

    def check(ids: list[int]) -> bool:
        tail = decode(ids[-window:])
        return any(s in tail for s in stops)

    return check


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string."""
    cuts = [text.find(s) for s in stops if s and s in text]
    return text[: min(cuts)] if cuts else text
