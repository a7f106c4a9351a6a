"""Export a CodeGenLM to a Hugging Face ``transformers`` LLaMA checkpoint directory, and import one.

A CodeGenLM with ``mlp: swiglu``, no MoE and no prefix-LM is exactly ``LlamaForCausalLM``: pre-norm
RMSNorm blocks (same epsilon, gain applied after the float32 normalisation), rotary positions in
the "rotate half" layout with the same theta, SwiGLU ``down(silu(gate(x)) * up(x))``, optional
projection biases (``attention_bias``/``mlp_bias``), final RMSNorm, tied or untied LM head. Our
fused ``qkv`` projection is split into ``q_proj``/``k_proj``/``v_proj`` (rows in that order).

Writing needs only ``safetensors``; loading the result in ``transformers`` needs the optional
``hf`` extra. The run's tokenizer is copied too, so ``AutoTokenizer`` loads it as a fast tokenizer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from nl2code.models.codegen import CodeGenConfig, CodeGenLM
from nl2code.models.layers import RotaryEmbedding

# Hugging Face's folder layout (not a run directory's, though the weights file has the same name).
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_meta.json")  # tokenizers' file + nl2code's metadata
TOKENIZER_CONFIG = "tokenizer_config.json"
FILES = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILES[0], TOKENIZER_CONFIG)


class ExportError(ValueError):
    """A model or checkpoint that cannot be converted; the message says which setting and why."""


def check_llama_compatible(cfg: CodeGenConfig) -> None:
    """Raise :class:`ExportError` unless ``cfg`` is expressible as a LLaMA model."""
    if cfg.mlp != "swiglu":
        raise ExportError(f"model.mlp is {cfg.mlp!r}; LLaMA checkpoints need mlp: swiglu")
    if cfg.moe is not None:
        raise ExportError("model.moe is set; a LLaMA checkpoint has dense feed-forward blocks only")
    if cfg.prefix_lm:
        raise ExportError("model.prefix_lm is set; LLaMA attention is causal only")
    if cfg.copy_head:
        raise ExportError("model.copy_head is set; a LLaMA checkpoint has no pointer over the context")


def llama_config(cfg: CodeGenConfig, special: dict[str, int] | None = None) -> dict[str, Any]:
    """The ``config.json`` of the LLaMA equivalent of ``cfg``."""
    special = special or {}
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ff_width,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_heads,
        "head_dim": cfg.d_model // cfg.n_heads,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        # transformers < 5 reads rope_theta, >= 5 reads rope_parameters; both say the same
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "rope_scaling": None,
        "attention_bias": cfg.bias,
        "mlp_bias": cfg.bias,
        "attention_dropout": 0.0,
        "tie_word_embeddings": cfg.tie_embeddings,
        "initializer_range": cfg.init_std,
        "bos_token_id": special.get("bos"),
        "eos_token_id": special.get("eos"),
        "pad_token_id": special.get("pad"),
        "torch_dtype": "float32",
        "use_cache": True,
    }


def to_llama_state_dict(model: CodeGenLM) -> dict[str, torch.Tensor]:
    """Our weights under LLaMA's parameter names (tied head stored once, as HF expects)."""
    cfg, d = model.cfg, model.cfg.d_model
    out = {"model.embed_tokens.weight": model.embed.weight, "model.norm.weight": model.norm.weight}
    for i, block in enumerate(model.blocks):
        pre = f"model.layers.{i}."
        q, k, v = block.attn.qkv.weight.split(d, dim=0)
        out |= {pre + "self_attn.q_proj.weight": q, pre + "self_attn.k_proj.weight": k,
                pre + "self_attn.v_proj.weight": v, pre + "self_attn.o_proj.weight": block.attn.out.weight,
                pre + "mlp.gate_proj.weight": block.mlp.gate.weight, pre + "mlp.up_proj.weight": block.mlp.up.weight,
                pre + "mlp.down_proj.weight": block.mlp.down.weight,
                pre + "input_layernorm.weight": block.attn_norm.weight,
                pre + "post_attention_layernorm.weight": block.mlp_norm.weight}
        if cfg.bias:
            qb, kb, vb = block.attn.qkv.bias.split(d, dim=0)
            out |= {pre + "self_attn.q_proj.bias": qb, pre + "self_attn.k_proj.bias": kb,
                    pre + "self_attn.v_proj.bias": vb, pre + "self_attn.o_proj.bias": block.attn.out.bias,
                    pre + "mlp.gate_proj.bias": block.mlp.gate.bias, pre + "mlp.up_proj.bias": block.mlp.up.bias,
                    pre + "mlp.down_proj.bias": block.mlp.down.bias}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = model.lm_head.weight
    return out


def export_llama(
    model: CodeGenLM, out_dir: str | Path, tokenizer: Any | None = None, dtype: torch.dtype = torch.float32
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ the tokenizer files) into ``out_dir``."""
    check_llama_compatible(model.cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    special = None
    if tokenizer is not None:
        special = {"bos": tokenizer.eos_id, "eos": tokenizer.eos_id, "pad": tokenizer.pad_id}
    config = llama_config(model.cfg, special)
    config["torch_dtype"] = str(dtype).removeprefix("torch.")
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in to_llama_state_dict(model).items()}
    save_file(state, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if tokenizer is not None:
        tokenizer.save(out_dir)  # tokenizer.json (+ our metadata)
        tok_config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<eos>", "pad_token": "<pad>",
                      "bos_token": "<eos>", "model_max_length": model.cfg.max_seq_len,
                      "clean_up_tokenization_spaces": False}
        (out_dir / TOKENIZER_CONFIG).write_text(json.dumps(tok_config, indent=2) + "\n", encoding="utf-8")
    return out_dir


def config_from_llama(config: dict[str, Any], source: str = CONFIG_FILE) -> CodeGenConfig:
    """The :class:`CodeGenConfig` of a LLaMA ``config.json``; ExportError for what we cannot express."""
    if config.get("model_type") != "llama":
        raise ExportError(f"{source}: model_type is {config.get('model_type')!r}, expected 'llama'")
    heads = int(config["num_attention_heads"])
    if int(config.get("num_key_value_heads") or heads) != heads:
        raise ExportError(f"{source}: num_key_value_heads != num_attention_heads (grouped-query attention)")
    if config.get("hidden_act", "silu") != "silu":
        raise ExportError(f"{source}: hidden_act {config['hidden_act']!r}; only silu (SwiGLU) is supported")
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    if head_dim * heads != config["hidden_size"]:
        raise ExportError(f"{source}: head_dim * num_attention_heads != hidden_size")
    rope = config.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default" or config.get("rope_scaling"):
        raise ExportError(f"{source}: rope scaling is not supported")
    if config.get("attention_bias", False) != config.get("mlp_bias", False):
        raise ExportError(f"{source}: attention_bias and mlp_bias differ; we have one bias switch")
    return CodeGenConfig(
        vocab_size=int(config["vocab_size"]), d_model=int(config["hidden_size"]),
        n_layers=int(config["num_hidden_layers"]), n_heads=heads, d_ff=int(config["intermediate_size"]),
        mlp="swiglu", max_seq_len=int(config.get("max_position_embeddings", 2048)),
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
        norm_eps=float(config.get("rms_norm_eps", 1e-6)), bias=bool(config.get("attention_bias", False)),
        init_std=float(config.get("initializer_range", 0.02)),
    )


def import_llama(hf_dir: str | Path) -> CodeGenLM:
    """Load a LLaMA checkpoint directory (single ``model.safetensors``) as a CodeGenLM (fp32)."""
    hf_dir = Path(hf_dir)
    cfg_path, weights = hf_dir / CONFIG_FILE, hf_dir / WEIGHTS_FILE
    for p in (cfg_path, weights):
        if not p.is_file():
            raise ExportError(f"{p}: missing (sharded checkpoints are not supported)")
    cfg = config_from_llama(json.loads(cfg_path.read_text(encoding="utf-8")), str(cfg_path))
    with torch.device("meta"):  # skip the random init: every weight is overwritten
        model = CodeGenLM(cfg)
    model = model.to_empty(device="cpu")
    model.rotary = RotaryEmbedding(cfg.d_model // cfg.n_heads, cfg.max_seq_len, cfg.rope_theta)  # derived buffers
    if cfg.tie_embeddings:  # to_empty gives each module its own tensor: tie again
        model.lm_head.weight = model.embed.weight
    theirs = {k: v.float() for k, v in load_file(str(weights)).items()}
    ours = to_llama_state_dict(model)
    missing = sorted(set(ours) - set(theirs))
    extra = sorted(set(theirs) - set(ours) - {"lm_head.weight"})  # a tied checkpoint may still carry it
    if missing or extra:
        raise ExportError(f"{weights}: missing {missing[:3]} / unexpected {extra[:3]} tensors")
    with torch.no_grad():
        for name, param in ours.items():
            if param.shape != theirs[name].shape:
                got, want = tuple(theirs[name].shape), tuple(param.shape)
                raise ExportError(f"{weights}: {name} has shape {got}, expected {want}")
            param.copy_(theirs[name])
    return model.eval()


def copy_tokenizer(hf_dir: str | Path, dest: str | Path) -> None:
    """Copy the checkpoint's ``tokenizer.json`` (+ metadata) into ``dest`` (a run's tokenizer folder)."""
    hf_dir, dest = Path(hf_dir), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (hf_dir / name).is_file():
            shutil.copyfile(hf_dir / name, dest / name)
