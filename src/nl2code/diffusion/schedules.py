"""Noise schedules as pure functions: ``betas`` of length T and the cumulative ``alphas_cumprod``.

Convention (DDPM): index ``t`` runs over ``0 .. T-1``; ``alphas_cumprod[t] = prod_{i<=t} (1 - betas[i])``
is the signal fraction of ``x_t`` (``x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps``). Every schedule is
built from one shared :func:`betas_for_alpha_bar`, except ``linear``, which is defined by its betas.

Computed in float64: the sqrt schedule's last betas are within 1e-3 of 1 and float32 products lose them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, get_args

import torch

ScheduleName = Literal["sqrt", "linear", "cosine"]
SCHEDULES: tuple[str, ...] = get_args(ScheduleName)
MAX_BETA = 0.999  # Diffusion-LM / GENIE cap: keeps the final step's beta below 1 (ab_T > 0)


def betas_for_alpha_bar(
    alpha_bar: Callable[[float], float], num_timesteps: int, max_beta: float = MAX_BETA
) -> torch.Tensor:
    """Discretise a continuous ``alpha_bar(s)``, ``s`` in [0, 1], into ``num_timesteps`` betas.

    ``beta_t = min(1 - alpha_bar((t+1)/T) / alpha_bar(t/T), max_beta)``, so the cumulative product
    telescopes to ``alpha_bar((t+1)/T) / alpha_bar(0)`` wherever the cap is not hit.
    """
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
    betas = []
    for i in range(num_timesteps):
        a0, a1 = alpha_bar(i / num_timesteps), alpha_bar((i + 1) / num_timesteps)
        # A non-positive alpha_bar (the sqrt schedule at s = 1) means "all noise": take the cap.
        beta = 1.0 - a1 / a0 if a0 > 0 and a1 > 0 else max_beta
        betas.append(min(max(beta, 0.0), max_beta))
    return torch.tensor(betas, dtype=torch.float64)


def sqrt_alpha_bar(s: float, offset: float = 1e-4) -> float:
    """Diffusion-LM's square-root schedule ``1 - sqrt(s + offset)`` (codefusion.md §3, s = 1e-4).

    It adds noise fast at small ``s``, which is what makes rounding to discrete tokens learnable.
    """
    return 1.0 - math.sqrt(s + offset)


def cosine_alpha_bar(s: float, offset: float = 0.008) -> float:
    """Nichol & Dhariwal's cosine schedule ``cos^2((s + offset) / (1 + offset) * pi / 2)``."""
    return math.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's linear betas, rescaled by ``1000 / T`` so any T reaches a similar final ``alpha_bar``."""
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
    scale = 1000.0 / num_timesteps
    return torch.linspace(scale * beta_start, min(scale * beta_end, MAX_BETA), num_timesteps, dtype=torch.float64)


def sqrt_betas(num_timesteps: int) -> torch.Tensor:
    return betas_for_alpha_bar(sqrt_alpha_bar, num_timesteps)


def cosine_betas(num_timesteps: int) -> torch.Tensor:
    return betas_for_alpha_bar(cosine_alpha_bar, num_timesteps)


# schedule name -> betas of T steps; a new schedule adds one line here (and its name to ScheduleName)
BETAS: dict[str, Callable[[int], torch.Tensor]] = {
    "sqrt": sqrt_betas,
    "linear": linear_betas,
    "cosine": cosine_betas,
}


def make_betas(name: str, num_timesteps: int) -> torch.Tensor:
    """Betas (float64, shape ``(T,)``) of the schedule called ``name``."""
    if name not in BETAS:
        raise ValueError(f"unknown noise schedule {name!r} (known: {', '.join(SCHEDULES)})")
    return BETAS[name](num_timesteps)


def alphas_cumprod(name: str, num_timesteps: int) -> torch.Tensor:
    """``alpha_bar`` per timestep (float64, ``(T,)``), strictly decreasing in ``(0, 1)``."""
    return torch.cumprod(1.0 - make_betas(name, num_timesteps), dim=0)


def spaced_timesteps(num_train_timesteps: int, num_inference_steps: int) -> torch.Tensor:
    """``num_inference_steps`` evenly spaced training timesteps, descending from ``T-1`` to 0.

    With ``num_inference_steps == T`` this is every step ``T-1 .. 0`` (full DDPM); fewer steps skip
    evenly (DDIM-style "uniform" spacing); a single step is just ``[T-1]``.
    """
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(f"num_inference_steps must be in 1..{num_train_timesteps}, got {num_inference_steps}")
    steps = torch.linspace(num_train_timesteps - 1, 0, num_inference_steps, dtype=torch.float64)
    return steps.round().long()
