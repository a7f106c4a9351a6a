"""AdamW with decay/no-decay parameter groups, the warmup + cosine schedule, and an EMA of weights."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from nl2code.train.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices and embeddings (dim >= 2) decay; norms' gains and biases don't.

    Tied weights appear once (``named_parameters`` de-duplicates them).
    """
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    # The fused kernel (one pass over each parameter) exists on CPU and CUDA; on CPU it was 6-9x faster
    # than the foreach path for a 12M-parameter model (benchmarks/results/train_throughput.md).
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused
    )


def lr_at(step: int, cfg: TrainConfig, elapsed_s: float = 0.0) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warm-up, then cosine to ``min_lr``.

    A pure function of the step, so resuming needs nothing but the step counter. With a wall-clock budget
    (``cfg.max_minutes``) the cosine runs over the budget instead: progress is the larger of the step and
    the time fractions (``elapsed_s`` of the stage so far), so the decay ends wherever the budget ends.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(cfg.max_steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    if cfg.max_minutes > 0:
        progress = max(progress, min(elapsed_s / (cfg.max_minutes * 60), 1.0))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * progress))


class EMA:
    """Exponential moving average of a model's floating-point parameters, kept in float32.

    ``update`` after each optimizer step; ``swapped_in(model)`` temporarily loads the averaged
    weights (for evaluation, previews and the final export) and restores the live ones after.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().float().clone() for name, p in model.named_parameters()
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            self.shadow[name].lerp_(p.detach().float(), 1.0 - self.decay)

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        live = {name: p.detach().clone() for name, p in model.named_parameters()}
        try:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.copy_(self.shadow[name])
            yield model
        finally:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.copy_(live[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.shadow):
            missing = sorted(set(self.shadow) ^ set(state))
            raise ValueError(f"EMA state does not match the model's parameters: {missing[:5]}")
        for name, t in state.items():
            self.shadow[name] = t.to(self.shadow[name].device, torch.float32).clone()
