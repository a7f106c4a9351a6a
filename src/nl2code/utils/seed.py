"""Seed derivation and RNG state capture/restore for exact resumption."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integer ``parts`` (e.g. base seed, rank, purpose)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


def global_rng_state(device: torch.device) -> dict[str, Any]:
    """The process-global RNG states that modules use implicitly (dropout draws from torch's).

    Only types that ``torch.load(weights_only=True)`` accepts, so checkpoints load safely.
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_global_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _as_tuple(value: Any) -> Any:
    # random.setstate needs tuples all the way down; a serializer may hand back lists.
    if isinstance(value, list | tuple):
        return tuple(_as_tuple(v) for v in value)
    return value


def seeded_subset(items: list, n: int | None, seed: int = 0) -> list:
    """``n`` of ``items`` drawn at random with ``seed``, kept in their original order; all of them when
    ``n`` is None or not smaller. Never a prefix: benchmark files are often sorted (the CodeFusion Bash
    test split's first 400 rows are 99 % ``find`` commands)."""
    if n is None or n >= len(items):
        return list(items)
    chosen = set(random.Random(seed).sample(range(len(items)), n))
    return [x for i, x in enumerate(items) if i in chosen]
