"""Classifier-free guidance, shared by the diffusion and AR samplers: the weight's check and the guided
log-probabilities ``log p_u + w (log p_c - log p_u)`` (Ho & Salimans 2022; Sanchez et al. 2023 for LMs)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def check_weight(name: str, w: float) -> None:
    """Raise ValueError unless ``w`` is a finite number >= 0 (1 = no guidance)."""
    if not (math.isfinite(w) and w >= 0):
        raise ValueError(f"{name} must be a finite number >= 0 (1 = off), got {w}")


def guided_logp(cond: torch.Tensor, uncond: torch.Tensor, w: float) -> torch.Tensor:
    """Guided token scores (..., V) in float32 from the conditional and unconditional scores (logits or
    log-probabilities; both are normalised first). Not renormalised: log_softmax it to get probabilities."""
    c, u = cond.float().log_softmax(-1), uncond.float().log_softmax(-1)
    return u + w * (c - u)
