"""The Objective protocol: what the training loop calls to turn a batch into a loss.

Objectives are where model families differ (next-token CE, FIM, diffusion denoising, CPD), so the
loop itself never changes. Subclass :class:`Objective` and register a config kind in
``nl2code.objectives.OBJECTIVES``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from nl2code.data.collate import Batch, Example


class Objective(ABC):
    """Base class: ``objective(model, batch, generator) -> (loss, metrics)``.

    Contract the training loop relies on:

    - ``loss`` is a scalar *mean* over ``weight(batch)`` units (tokens, sequences...);
    - ``weight(batch)`` is computed from the CPU batch alone. The loop uses it to combine
      micro-batches and data-parallel ranks exactly: the optimizer sees the mean over every unit
      of the global batch, whatever the split;
    - ``metrics`` are detached scalars averaged the same way and logged next to the loss; every
      call returns the same keys (data-parallel ranks reduce them as one tensor);
    - all randomness (noise, masking) is drawn from ``generator``, which lives on the batch's
      device; the loop checkpoints and restores it.
    """

    @abstractmethod
    def __call__(
        self, model: nn.Module, batch: Batch, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss (scalar mean over ``weight(batch)`` units) and detached scalar metrics."""

    def weight(self, batch: Batch) -> int:
        """Number of units the loss averages over (default: sequences)."""
        return len(batch)

    def example_transform(
        self, tokenizer: Any, data_cfg: Any
    ) -> Callable[[Example, np.random.Generator], Example] | None:
        """A rewrite the training batch stream applies to every row before collation, or None.

        Used by objectives whose inputs are rewritten token sequences that need the tokenizer
        (span corruption, FIM). The stream calls it with a generator derived from (seed, epoch,
        row), so rewrites are fresh each epoch yet reproducible and resumable from the data
        position alone. ``tokenizer`` is the run's CodeTokenizer, ``data_cfg`` its DataConfig.
        """
        return None

    def preview(
        self,
        model: nn.Module,
        prompts: list[list[int]],
        *,
        max_new_tokens: int,
        eos_id: int,
        generator: torch.Generator,
    ) -> list[list[int]] | None:
        """Generated continuations of ``prompts`` for the training-time sample preview.

        Returns None when this objective has no cheap way to sample (the loop then skips previews).
        """
        return None
