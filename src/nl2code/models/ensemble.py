"""Several causal LMs over one vocabulary, decoded as one: the mixture of their next-token distributions.

``Ensemble`` has the causal LM's calling convention (``forward(ids, attention_mask=, position_ids=, cache=,
prefix_mask=, logits_to_keep=)``, ``new_cache``, ``cfg``), so every sampler decodes it unchanged; its logits are
log-probabilities, ``log(mean_i p_i)``. Models trained with different seeds on the same data disagree where each
is unsure, and the mixture keeps what they agree on: on Bash it is the logit-level counterpart of pooling their
samples under MBR (benchmarks/results/bash_ar_pt_pool2.md).
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from nl2code.models.outputs import ModelOutput


class EnsembleCache:
    """One KV cache per member, reordered together (beam search and n samples per prompt reorder rows)."""

    def __init__(self, caches: list):
        self.members = caches

    @property
    def length(self) -> int:
        return self.members[0].length

    @property
    def batch_size(self) -> int:
        return self.members[0].batch_size

    def select(self, index: torch.Tensor) -> None:
        for c in self.members:
            c.select(index)


class Ensemble(nn.Module):
    """The mixture of ``models`` (causal LMs with one tokenizer); ``cfg`` is the first member's config.

    Args:
        models: two or more causal LMs of the same vocabulary size and context length.
    """

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if len(models) < 2:
            raise ValueError("an ensemble needs at least two models")
        sizes = {(m.cfg.vocab_size, m.cfg.max_seq_len) for m in models}
        if len(sizes) > 1:
            raise ValueError(f"ensemble members differ in (vocab_size, max_seq_len): {sorted(sizes)}")
        self.members = nn.ModuleList(models)
        self.cfg = models[0].cfg
        # a member with a copy head computes all its logits (it refuses logits_to_keep): the slice is taken here
        self._keeps = [
            "logits_to_keep" in inspect.signature(m.forward).parameters and not getattr(m.cfg, "copy_head", False)
            for m in models
        ]

    def new_cache(self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> EnsembleCache:
        return EnsembleCache([m.new_cache(batch_size, max_len, dtype) for m in self.members])

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        *,
        cache: EnsembleCache | None = None,
        prefix_mask: torch.Tensor | None = None,
        logits_to_keep: int = 0,
    ) -> ModelOutput:
        logps, hidden = [], None
        for i, (m, keeps) in enumerate(zip(self.members, self._keeps, strict=True)):
            kwargs = {"logits_to_keep": logits_to_keep} if keeps and logits_to_keep else {}
            out = m(
                input_ids, attention_mask, position_ids,
                cache=cache.members[i] if cache is not None else None, prefix_mask=prefix_mask, **kwargs,
            )  # fmt: skip
            logits = out.logits[:, -logits_to_keep:] if logits_to_keep and not kwargs else out.logits
            logps.append(torch.log_softmax(logits.float(), dim=-1))
            hidden = out.hidden if hidden is None else hidden
        mixed = torch.logsumexp(torch.stack(logps), dim=0) - math.log(len(logps))
        return ModelOutput(logits=mixed, hidden=hidden)


__all__ = ["Ensemble", "EnsembleCache"]
