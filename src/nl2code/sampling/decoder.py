"""Incremental next-token logits for a batch of left-padded prompts, with or without a KV cache.

:class:`StepDecoder` is the one place the samplers (``autoregressive``, ``beam``) touch the model:
``start()`` gives the logits after each prompt, ``step(tokens)`` feeds one token per row and gives
the next logits, ``select(rows)`` reorders, repeats or drops rows (beams, n samples per prompt,
finished rows). With ``use_cache=False`` every step re-runs the whole sequence: slow, but the
reference the cached path is tested against.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn


def left_pad(
    prompts: list[list[int]], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids and (B, T) bool keep-mask, each prompt right-aligned (left padding)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    keep = torch.zeros((len(prompts), width), dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        keep[i, width - len(p) :] = True
    return ids.to(device), keep.to(device)


def fit_prompts(prompts: list[list[int]], max_seq_len: int, max_new_tokens: int) -> tuple[list[list[int]], int]:
    """Cut prompts from the left and cap ``max_new_tokens`` so prompt + output fit the context.

    At least a quarter of the context (and one token) is kept for the prompt.
    """
    new = max(1, min(max_new_tokens, max_seq_len - max(1, max_seq_len // 4)))
    room = max_seq_len - new
    return [p[-room:] for p in prompts], new


class StepDecoder:
    """Next-token logits, one step at a time, for ``prompts`` (token id lists).

    Args:
        model: a causal LM taking ``(ids, attention_mask=, position_ids=, cache=, prefix_mask=)``
            and returning an object with ``logits`` (B, T, V); ``new_cache`` is needed for
            ``use_cache``.
        prompts: one token list per row.
        pad_id: id used for left padding (never attended to).
        max_new_tokens: most tokens that will be fed after the prompts (sizes the cache).
        use_cache: keep keys/values instead of recomputing the whole sequence each step.
        prefix_lm: the prompt is a bidirectional prefix (for models trained as prefix-LMs).
    """

    def __init__(
        self,
        model: nn.Module,
        prompts: list[list[int]],
        *,
        pad_id: int,
        max_new_tokens: int,
        use_cache: bool = True,
        prefix_lm: bool = False,
    ):
        self.model = model
        self.device = next(model.parameters()).device
        self.ids, self.keep = left_pad(prompts, pad_id, self.device)  # (B, T0); grows only without a cache
        self.prefix = self.keep.clone() if prefix_lm else None
        self.use_cache = use_cache
        self.cache = model.new_cache(len(prompts), self.ids.shape[1] + max_new_tokens) if use_cache else None
        # Only the last position's logits are used: models that can skip the LM head elsewhere do.
        self.last_only = "logits_to_keep" in inspect.signature(model.forward).parameters

    @property
    def batch_size(self) -> int:
        return self.ids.shape[0]

    def _logits(self, ids: torch.Tensor, keep: torch.Tensor | None, prefix: torch.Tensor | None) -> torch.Tensor:
        kwargs = {"logits_to_keep": 1} if self.last_only else {}
        out = self.model(ids, attention_mask=keep, cache=self.cache, prefix_mask=prefix, **kwargs)
        return out.logits[:, -1].float()  # (B, V)

    @torch.no_grad()
    def start(self) -> torch.Tensor:
        """(B, V) logits of the first new token of every row."""
        return self._logits(self.ids, self.keep, self.prefix)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append ``tokens`` (B,) and return the (B, V) logits of the token after them."""
        tokens = tokens.to(self.device).long()[:, None]
        if self.cache is not None:  # the cache holds the history: no growing copy of ids per step
            return self._logits(tokens, None, None)
        self.ids = torch.cat([self.ids, tokens], dim=1)
        self.keep = torch.cat([self.keep, torch.ones_like(tokens, dtype=torch.bool)], dim=1)
        prefix = None
        if self.prefix is not None:
            prefix = torch.cat([self.prefix, torch.zeros_like(tokens, dtype=torch.bool)], dim=1)
            self.prefix = prefix
        return self._logits(self.ids, self.keep, prefix)

    def select(self, rows: torch.Tensor | list[int]) -> None:
        """Keep rows ``rows`` (may repeat or reorder); the batch becomes ``len(rows)`` rows."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        self.ids, self.keep = self.ids.index_select(0, index), self.keep.index_select(0, index)
        if self.prefix is not None:
            self.prefix = self.prefix.index_select(0, index)
        if self.cache is not None:
            self.cache.select(index)
