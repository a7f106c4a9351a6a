"""Objective registry: a config ``kind`` names a (config class, objective class) pair.

Configs select one with ``objective: {kind: causal_lm, ...}``. A new objective adds its module here
and one line to ``OBJECTIVES`` (which also makes its config class selectable by ``kind``).
"""

from __future__ import annotations

from nl2code.config import register_kinds
from nl2code.objectives.autoregressive import (
    CausalLMConfig,
    CausalLMObjective,
    CodeGen2MixtureConfig,
    CodeGen2MixtureObjective,
)
from nl2code.objectives.base import Objective
from nl2code.objectives.diffusion import CodeFusionLossConfig, CodeFusionObjective

OBJECTIVES: dict[str, tuple[type, type[Objective]]] = {
    "causal_lm": (CausalLMConfig, CausalLMObjective),
    "codegen2_mixture": (CodeGen2MixtureConfig, CodeGen2MixtureObjective),
    "codefusion": (CodeFusionLossConfig, CodeFusionObjective),
}
register_kinds("objective", {kind: config for kind, (config, _) in OBJECTIVES.items()})


def build_objective(cfg: object) -> Objective:
    """The objective for config ``cfg`` (an instance of a registered objective config class)."""
    kind = getattr(type(cfg), "kind", None)
    if kind not in OBJECTIVES or not isinstance(cfg, OBJECTIVES[kind][0]):
        raise ValueError(f"no objective registered for config {type(cfg).__name__} (known: {sorted(OBJECTIVES)})")
    return OBJECTIVES[kind][1](cfg)


__all__ = [
    "OBJECTIVES",
    "CausalLMConfig",
    "CausalLMObjective",
    "CodeGen2MixtureConfig",
    "CodeGen2MixtureObjective",
    "Objective",
    "build_objective",
]
