"""Named CodeGen sizes: the four CodeGen1 models (Nijkamp et al. 2022) and small CPU-trainable ones.

The CodeGen shapes follow the released checkpoints (GPT-J-style blocks, 2,048 context, GPT-2 BPE
vocabulary of 51,200, untied LM head, 4x MLP). Our blocks are the nl2code ones (pre-norm RMSNorm,
full rotary, no biases), so parameter counts are close to, not equal to, the released ones:
:func:`describe` gives 356.6M / 2.78B / 7.06B / 16.03B. The 6.1B shape (33 layers x 4,096) as recorded
in our reference notes counts 7.06B with a 4x MLP and untied 51,200-row embeddings; check it against
the released config before relying on that preset.
:func:`count_parameters` builds a model on the meta device, so even 16.1B costs no memory.

In a YAML config, spell out the fields, e.g. ``python -c "from nl2code.models.presets import
preset_yaml; print(preset_yaml('codegen-350m'))"``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import yaml

from nl2code.config import to_dict
from nl2code.models.codegen import CodeGenConfig, CodeGenLM

_CODEGEN = {"vocab_size": 51200, "max_seq_len": 2048, "mlp": "gelu", "tie_embeddings": False}

PRESETS: dict[str, dict[str, Any]] = {
    # CodeGen1 sizes (nominal parameter count in the name)
    "codegen-350m": {**_CODEGEN, "d_model": 1024, "n_layers": 20, "n_heads": 16},
    "codegen-2.7b": {**_CODEGEN, "d_model": 2560, "n_layers": 32, "n_heads": 32},
    "codegen-6.1b": {**_CODEGEN, "d_model": 4096, "n_layers": 33, "n_heads": 16},
    "codegen-16.1b": {**_CODEGEN, "d_model": 6144, "n_layers": 34, "n_heads": 24},
    # small models that train on 2 CPU cores in minutes (vocab_size 0 = the run's tokenizer)
    "tiny": {"d_model": 64, "n_layers": 2, "n_heads": 4, "max_seq_len": 256},
    "small": {"d_model": 128, "n_layers": 4, "n_heads": 4, "max_seq_len": 256},
    "base": {"d_model": 256, "n_layers": 6, "n_heads": 8, "max_seq_len": 512},
    # LLaMA-style (exportable to transformers' LlamaForCausalLM)
    "llama-small": {"d_model": 128, "n_layers": 4, "n_heads": 4, "max_seq_len": 256, "mlp": "swiglu"},
}


def preset(name: str, **overrides: Any) -> CodeGenConfig:
    """The :class:`CodeGenConfig` of preset ``name`` with ``overrides`` applied."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return replace(CodeGenConfig(**PRESETS[name]), **overrides)


def count_parameters(cfg: CodeGenConfig) -> int:
    """Parameters of a model with config ``cfg`` (built on the meta device: no memory, no init cost)."""
    if cfg.vocab_size <= 0:
        cfg = replace(cfg, vocab_size=8192)
    with torch.device("meta"):
        model = CodeGenLM(cfg)
    return model.num_parameters()


def preset_yaml(name: str, **overrides: Any) -> str:
    """The ``model:`` section of a run config for preset ``name``."""
    return yaml.safe_dump({"model": to_dict(preset(name, **overrides))}, sort_keys=False)


def describe() -> list[tuple[str, int]]:
    """(name, parameter count) of every preset; small presets counted with an 8,192-token vocabulary."""
    return [(name, count_parameters(preset(name))) for name in PRESETS]
