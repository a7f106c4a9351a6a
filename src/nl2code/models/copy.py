"""A copy head for the causal LM: a pointer over the context mixed into the vocabulary distribution.

Small NL->code models trained on a few thousand pairs learn the program's shape but write values from
their training set instead of the request's (``greater than 4000`` -> ``GreaterThan(40000)``,
``contain Harry`` -> ``TextContains(3000)``: benchmarks/results/cf_matched.md). A pointer lets the
next token be *copied* from an earlier position, whatever its embedding learned: the pointer-sentinel
mixture of Merity et al. (2016) / the pointer-generator of See et al. (2017), over the causal context:

    p(w) = g * softmax(lm_head(h))[w] + (1 - g) * sum_{j <= i, x_j = w} a_ij
    a_i = softmax_j(q(h_i) . k(h_j) / sqrt(D)),   g = sigmoid(gate(h_i))

``h`` is the final (normed) hidden state. The head returns ``log p`` as the model's logits: already
normalised, so cross-entropy, log-softmax, temperature and beam search use them unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CopyHead"]


class CopyHead(nn.Module):
    """Query/key projections for the pointer and the gate between generating and copying."""

    def __init__(self, d_model: int):
        super().__init__()
        self.query = nn.Linear(d_model, d_model, bias=False)
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.gate = nn.Linear(d_model, 1)

    def forward(
        self,
        vocab_logits: torch.Tensor,
        hidden: torch.Tensor,
        keys: torch.Tensor,
        key_ids: torch.Tensor,
        key_keep: torch.Tensor | None,
        first_pos: int | None,
    ) -> torch.Tensor:
        """Log-probabilities (B, Tq, V) of the mixture.

        Args:
            vocab_logits: (B, Tq, V) the LM head's logits at the query positions.
            hidden: (B, Tq, D) final hidden states at the query positions.
            keys: (B, S, D) ``key(h_j)`` of every context position so far (S >= first_pos + Tq).
            key_ids: (B, S) the token at each context position (what copying it emits).
            key_keep: (B, S) True on real tokens (None: all real).
            first_pos: the absolute position of the first query; query ``i`` sees keys ``<= first_pos + i``.
                None: every key is visible to every query (a separate context, e.g. CodeFusion's utterance).
        """
        q = self.query(hidden).float()
        with torch.autocast(q.device.type, enabled=False):  # the mixture is built in fp32 under bf16 autocast
            return self._mix(vocab_logits, hidden, q, keys, key_ids, key_keep, first_pos)

    def _mix(
        self,
        vocab_logits: torch.Tensor,
        hidden: torch.Tensor,
        q: torch.Tensor,
        keys: torch.Tensor,
        key_ids: torch.Tensor,
        key_keep: torch.Tensor | None,
        first_pos: int | None,
    ) -> torch.Tensor:
        scores = q @ keys.float().transpose(1, 2) / math.sqrt(q.shape[-1])  # (B, Tq, S)
        S, Tq = keys.shape[1], hidden.shape[1]
        if first_pos is None:
            allowed = torch.ones(Tq, S, dtype=torch.bool, device=q.device)
        else:
            pos = torch.arange(first_pos, first_pos + Tq, device=q.device)
            allowed = torch.arange(S, device=q.device)[None, :] <= pos[:, None]  # (Tq, S)
        allowed = allowed[None] if key_keep is None else allowed[None] & key_keep[:, None, :].bool()
        attn = scores.masked_fill(~allowed, float("-inf")).softmax(-1).nan_to_num(0.0)
        copied = torch.zeros_like(vocab_logits, dtype=torch.float32)
        copied.scatter_add_(2, key_ids[:, None, :].expand(-1, Tq, -1), attn)
        g = torch.sigmoid(self.gate(hidden.to(self.gate.weight.dtype)).float())  # (B, Tq, 1)
        p = g * F.softmax(vocab_logits.float(), dim=-1) + (1 - g) * copied
        return torch.log(p.clamp(min=1e-30))
