"""Model registry: a config ``kind`` names a (config class, model class) pair.

Configs select a model with ``model: {kind: codegen, ...}``; :func:`build_model` turns the parsed
config into a module. A new model family adds its module here and one line to ``MODELS`` (which
also makes its config class selectable by ``kind`` in run configs).
"""

from __future__ import annotations

import torch
from torch import nn

from nl2code.config import register_kinds
from nl2code.models.codefusion import CodeFusion, CodeFusionConfig
from nl2code.models.codegen import CodeGenConfig, CodeGenLM
from nl2code.models.outputs import ModelOutput

MODELS: dict[str, tuple[type, type[nn.Module]]] = {
    "codegen": (CodeGenConfig, CodeGenLM),
    "codefusion": (CodeFusionConfig, CodeFusion),
}
register_kinds("model", {kind: config for kind, (config, _) in MODELS.items()})


def model_class(cfg: object) -> type[nn.Module]:
    """The model class for config ``cfg`` (an instance of a registered config class)."""
    kind = getattr(type(cfg), "kind", None)
    if kind not in MODELS or not isinstance(cfg, MODELS[kind][0]):
        raise ValueError(f"no model registered for config {type(cfg).__name__} (known: {sorted(MODELS)})")
    return MODELS[kind][1]


def build_model(cfg: object, generator: torch.Generator | None = None) -> nn.Module:
    """Build the model for ``cfg``; weights are drawn from ``generator`` (deterministic when seeded)."""
    return model_class(cfg)(cfg, generator=generator)


__all__ = ["MODELS", "CodeGenConfig", "CodeGenLM", "ModelOutput", "build_model", "model_class"]
