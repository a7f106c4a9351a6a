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


def guided_logp(cond_logp: torch.Tensor, uncond: torch.Tensor, w: float) -> torch.Tensor:
    """Guided token scores (..., V) in float32 from the conditional log-probabilities (the caller has them
    already: the AR sampler scores its tokens with them) and the unconditional scores (logits or
    log-probabilities; normalised here). Not renormalised: log_softmax it to get probabilities."""
    u = uncond.float().log_softmax(-1)
    return u + w * (cond_logp.float() - u)
