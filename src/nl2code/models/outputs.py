"""The typed output every model's ``forward`` returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ModelOutput:
    """What a model returns; objectives and samplers read these fields and nothing else.

    Attributes:
        logits: ``(B, T, V)`` unnormalised next-token (or per-position) scores.
        hidden: ``(B, T, D)`` final hidden states, after the last norm.
        aux_loss: a scalar auxiliary loss the model wants added to the objective (e.g. MoE
            load balancing), already multiplied by its coefficient; ``None`` when there is none.
    """

    logits: torch.Tensor | None  # None when the caller asked for hidden states only
    hidden: torch.Tensor
    aux_loss: torch.Tensor | None = None
