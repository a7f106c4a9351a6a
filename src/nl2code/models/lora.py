"""LoRA adapters (Hu et al. 2021) on chosen linear layers, with merge/unmerge and parameter accounting.

``LoRALinear(base)`` computes ``base(x) + scale * B(A(dropout(x)))`` with A (r, in) Kaiming-uniform,
B (out, r) zero (so a fresh adapter is an exact no-op), and ``scale = alpha / r`` (``alpha / sqrt(r)``
with rsLoRA). The base is frozen; it may be an ``nn.Linear`` or a 4-bit :class:`NF4Linear`
(QLoRA). :func:`apply_lora` wraps every matching layer of a model and freezes everything else.

Own implementation rather than PEFT: PEFT is not installed, and it would pull in transformers and
accelerate for ~150 lines of maths; it also only knows how to patch HF module types, while our
layers (``attn.qkv``, ``mlp.up``, MoE experts, NF4Linear) are plain modules addressed by name.
The merge maths and init follow the LoRA paper, so adapters convert to PEFT's layout by renaming
(``lora_a`` -> ``lora_A.weight``, ``lora_b`` -> ``lora_B.weight``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nl2code.models.quant import NF4Linear, matches, replace_module, tied_parameters


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update.

    Args:
        base: ``nn.Linear`` or :class:`NF4Linear` (frozen here).
        r: adapter rank.
        alpha: scaling numerator (``scale = alpha / r``, or ``alpha / sqrt(r)`` when ``rslora``).
        dropout: dropout on the adapter's input only (the base path sees x unchanged).
        generator: RNG for A's init.
    """

    def __init__(
        self,
        base: nn.Module,
        r: int,
        alpha: float,
        dropout: float = 0.0,
        rslora: bool = False,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if not isinstance(base, nn.Linear | NF4Linear):
            raise TypeError(f"LoRA wraps nn.Linear or NF4Linear, got {type(base).__name__}")
        if r < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout}")
        self.base = base.requires_grad_(False)
        self.r, self.alpha = r, alpha
        self.scale = alpha / math.sqrt(r) if rslora else alpha / r
        if isinstance(base, nn.Linear):
            device, dtype = base.weight.device, base.weight.dtype
        else:  # NF4: adapters train in the dtype the weight is dequantised to
            device, dtype = base.codes.device, base.weight_dtype
        self.lora_a = nn.Parameter(torch.empty(r, base.in_features, device=device, dtype=dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, r, device=device, dtype=dtype))
        # Same init as nn.Linear / PEFT: the product B A starts at exactly zero because B = 0.
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5), generator=generator)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """(out, in) ``scale * B @ A``: what merging adds to the base weight."""
        return (self.lora_b @ self.lora_a) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:  # the update already lives in base.weight
            return y
        a, b = self.lora_a.to(x.dtype), self.lora_b.to(x.dtype)
        return y + F.linear(F.linear(self.dropout(x), a), b) * self.scale

    def _base_linear(self) -> nn.Linear:
        if not isinstance(self.base, nn.Linear):
            # Adding a delta to 4-bit codes would re-quantise it and lose most of the update.
            raise TypeError("cannot merge LoRA into an NF4 base; dequantise it to nn.Linear first")
        return self.base

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight (forward unchanged, no extra matmuls)."""
        if not self.merged:
            weight = self._base_linear().weight
            weight += self.delta_weight().to(weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge` (exact up to float rounding of the add/subtract)."""
        if self.merged:
            weight = self._base_linear().weight
            weight -= self.delta_weight().to(weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, scale={self.scale:g}, merged={self.merged}"


def apply_lora(
    model: nn.Module,
    targets: Sequence[str],
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    rslora: bool = False,
    freeze: bool = True,
    generator: torch.Generator | None = None,
) -> list[str]:
    """Wrap every ``nn.Linear``/``NF4Linear`` whose name matches ``targets`` in a :class:`LoRALinear`.

    Args:
        model: modified in place.
        targets: module-name regexes, matched against the whole dotted name or a dotted suffix
            (``"qkv"``, ``"attn\\.out"``, ``"mlp\\.(up|down|gate)"``, ``"experts\\.\\d+\\.up"``).
        r, alpha, dropout, rslora: adapter settings (see :class:`LoRALinear`).
        freeze: make every non-adapter parameter of ``model`` non-trainable.
        generator: RNG for the A matrices (layers initialised in module order).
    Returns: the wrapped module names.
    Raises: ValueError if nothing matches, or if a target's weight is tied to another parameter
        (merging would then silently change the tied one too, e.g. the token embedding).
    """
    tied = tied_parameters(model)
    wrapped = {id(layer.base) for layer in lora_layers(model)}  # never wrap an adapter's own base
    names = [
        name
        for name, m in model.named_modules()
        if name and isinstance(m, nn.Linear | NF4Linear) and id(m) not in wrapped and matches(name, targets)
    ]
    if not names:
        raise ValueError(f"no nn.Linear/NF4Linear module name matches LoRA targets {list(targets)}")
    for name in names:
        base = model.get_submodule(name)
        if isinstance(base, nn.Linear) and id(base.weight) in tied:
            raise ValueError(f"LoRA target {name!r} has a tied weight; exclude it from the targets")
    if freeze:
        model.requires_grad_(False)
    for name in names:
        layer = LoRALinear(model.get_submodule(name), r, alpha, dropout, rslora, generator)
        replace_module(model, name, layer)
    return names


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> None:
    """Merge every adapter of ``model`` into its base weight."""
    for layer in lora_layers(model):
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    """Undo :func:`merge_lora`."""
    for layer in lora_layers(model):
        layer.unmerge()


def merge_and_unload(model: nn.Module) -> list[str]:
    """Replace every :class:`LoRALinear` by its merged plain ``nn.Linear`` (a dense model again).

    This is the ``W <- W + (alpha / r) B A`` step that turns per-language LoRA experts into dense
    expert MLPs for an MoE merge. Returns the names replaced.
    """
    names = [name for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name in names:
        layer = model.get_submodule(name)
        layer.merge()
        replace_module(model, name, layer.base)
    return names


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors (``...lora_a`` / ``...lora_b``), for saving a small expert delta."""
    return {k: v for k, v in model.state_dict().items() if k.endswith((".lora_a", ".lora_b"))}


@dataclass(frozen=True)
class ParamCount:
    """Parameter accounting; ``total`` counts each NF4 weight as one parameter (not as half a byte)."""

    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"trainable {self.trainable:,} / total {self.total:,} ({self.percent:.2f}%)"


def count_parameters(model: nn.Module) -> ParamCount:
    """Trainable and total parameter counts (tied parameters once; NF4 weights included in total)."""
    params = list(model.parameters())  # deduplicated, so tied weights count once
    total = sum(p.numel() for p in params)
    for m in model.modules():
        if isinstance(m, NF4Linear):  # frozen weights held in buffers, not parameters
            total += m.in_features * m.out_features + (m.bias.numel() if m.bias is not None else 0)
    return ParamCount(sum(p.numel() for p in params if p.requires_grad), total)


__all__ = [
    "LoRALinear",
    "ParamCount",
    "apply_lora",
    "count_parameters",
    "lora_layers",
    "lora_state_dict",
    "merge_and_unload",
    "merge_lora",
    "unmerge_lora",
]
