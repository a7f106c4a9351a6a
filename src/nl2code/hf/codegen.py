"""Salesforce CodeGen (``CodeGenForCausalLM``: CodeGen-mono/multi, CodeGen2) in both directions.

A CodeGen block is GPT-J's: one LayerNorm feeding attention and a GELU (tanh) MLP in parallel,
``x + attn(ln(x)) + mlp(ln(x))``; biases on the MLP and on the LM head, none on attention. Two
layout quirks are undone on import and redone on export:

* ``qkv_proj`` was trained split over 4 model-parallel shards: its rows are
  ``[shard 0: q, v, k][shard 1: q, v, k]...``, each block ``d_model / 4`` rows, and shard s holds
  heads ``s * H/4 ...``. We store ``[q; k; v]``.
* rotary positions act on the first ``rotary_dim`` dims of each head in the GPT-J "rotate every
  two" layout (pairs ``(2i, 2i+1)``); ours is "rotate half" (pairs ``(i, i + rotary_dim/2)``).
  Attention scores only see ``q . k``, so permuting the dims of q and k alike (rows of their
  projections) turns one layout into the other exactly.
"""

from __future__ import annotations

from typing import Any

import torch

from nl2code.hf.llama import UnsupportedCheckpoint
from nl2code.hf.mapping import Link, link
from nl2code.models.codegen import CodeGenConfig

MP_NUM = 4  # model-parallel shards baked into every CodeGen checkpoint's qkv_proj
# Buffers some checkpoints still carry: derived (masks), never parameters.
IGNORED_SUFFIXES = (".attn.causal_mask", ".attn.masked_bias", ".attn.bias")


def config_from_hf(config: dict[str, Any], where: str, max_seq_len: int) -> CodeGenConfig:
    """Our config for a ``codegen`` ``config.json``."""
    d = int(config.get("n_embd") or config["hidden_size"])
    heads = int(config.get("n_head") or config["num_attention_heads"])
    act = config.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise UnsupportedCheckpoint(f"{where}: activation_function {act!r}; only the tanh GELU (gelu_new) is supported")
    if not config.get("rotary_dim"):
        raise UnsupportedCheckpoint(f"{where}: rotary_dim is not set (every released CodeGen sets it)")
    if (d // heads) % 2 or d % (heads * 1) or heads % MP_NUM:
        raise UnsupportedCheckpoint(f"{where}: {heads} heads of width {d // heads} do not split over {MP_NUM} shards")
    return CodeGenConfig(
        vocab_size=int(config["vocab_size"]),
        d_model=d,
        n_layers=int(config.get("n_layer") or config["num_hidden_layers"]),
        n_heads=heads,
        d_ff=int(config.get("n_inner") or 4 * d),
        mlp="gelu",
        max_seq_len=min(int(config.get("n_positions") or config.get("max_position_embeddings", 2048)), max_seq_len),
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        rope_theta=10000.0,
        rotary_dim=int(config["rotary_dim"]),
        norm="layernorm",
        parallel_residual=True,
        norm_eps=float(config.get("layer_norm_epsilon", 1e-5)),
        init_std=float(config.get("initializer_range", 0.02)),
        mlp_bias=True,
        head_bias=True,
    )


def _head_perm(cfg: CodeGenConfig) -> torch.Tensor:
    """Row order within one head that turns "rotate every two" into "rotate half"."""
    rd, hd = cfg.rotary_dim or cfg.head_dim, cfg.head_dim
    return torch.cat([torch.arange(0, rd, 2), torch.arange(1, rd, 2), torch.arange(rd, hd)])


def qkv_to_ours(cfg: CodeGenConfig):
    perm = _head_perm(cfg)

    def convert(w: torch.Tensor) -> torch.Tensor:  # (3D, D) CodeGen layout -> [q; k; v]
        d = cfg.d_model
        q, v, k = w.view(MP_NUM, 3, d // MP_NUM, d).unbind(1)  # each (shards, D/4, D)
        q, k, v = (t.reshape(cfg.n_heads, cfg.head_dim, d) for t in (q, k, v))
        return torch.cat([q[:, perm], k[:, perm], v]).reshape(3 * d, d)

    return convert


def qkv_to_hf(cfg: CodeGenConfig):
    inverse = torch.argsort(_head_perm(cfg))

    def convert(w: torch.Tensor) -> torch.Tensor:  # [q; k; v] -> CodeGen's shard-interleaved layout
        d = cfg.d_model
        q, k, v = (t.reshape(cfg.n_heads, cfg.head_dim, d) for t in w.split(d))
        q, k = q[:, inverse], k[:, inverse]
        shards = [t.reshape(MP_NUM, d // MP_NUM, d) for t in (q, v, k)]
        return torch.stack(shards, dim=1).reshape(3 * d, d)

    return convert


def links(cfg: CodeGenConfig, names: set[str] | None = None) -> list[Link]:
    """Our parameters <-> HF CodeGen tensor names."""
    out = [
        link("embed.weight", "transformer.wte.weight"),
        link("norm.weight", "transformer.ln_f.weight"),
        link("norm.bias", "transformer.ln_f.bias"),
        link("lm_head.bias", "lm_head.bias"),
    ]
    if not cfg.tie_embeddings:
        out.append(link("lm_head.weight", "lm_head.weight"))
    for i in range(cfg.n_layers):
        hf, us = f"transformer.h.{i}.", f"blocks.{i}."
        out += [
            link(us + "attn_norm.weight", hf + "ln_1.weight"),
            link(us + "attn_norm.bias", hf + "ln_1.bias"),
            link(us + "attn.qkv.weight", hf + "attn.qkv_proj.weight", to_ours=qkv_to_ours(cfg), to_hf=qkv_to_hf(cfg)),
            link(us + "attn.out.weight", hf + "attn.out_proj.weight"),
            link(us + "mlp.up.weight", hf + "mlp.fc_in.weight"),
            link(us + "mlp.up.bias", hf + "mlp.fc_in.bias"),
            link(us + "mlp.down.weight", hf + "mlp.fc_out.weight"),
            link(us + "mlp.down.bias", hf + "mlp.fc_out.bias"),
        ]
    return out


def check_exportable(cfg: CodeGenConfig) -> str:
    """``codegen`` when ``cfg`` is a CodeGen block stack; UnsupportedCheckpoint otherwise."""
    wanted = {
        "norm": "layernorm",
        "parallel_residual": True,
        "mlp": "gelu",
        "moe": None,
        "prefix_lm": False,
        "rope_scaling": None,
        "n_kv_heads": 0,
        "bias": False,
        "qkv_bias": False,
        "out_bias": False,
        "mlp_bias": True,
        "head_bias": True,
    }
    bad = [f"{k}: {getattr(cfg, k)!r} (needs {v!r})" for k, v in wanted.items() if getattr(cfg, k) != v]
    if cfg.rope_theta != 10000.0:
        bad.append(f"rope_theta: {cfg.rope_theta} (CodeGen's is fixed at 10000)")
    if cfg.n_heads % MP_NUM:
        bad.append(f"n_heads: {cfg.n_heads} (must split over {MP_NUM} shards)")
    if bad:
        raise UnsupportedCheckpoint("not a CodeGen model: " + "; ".join(bad))
    return "codegen"


def hf_config(cfg: CodeGenConfig, model_type: str = "codegen") -> dict[str, Any]:
    """The ``config.json`` of ``cfg`` as ``CodeGenForCausalLM``."""
    return {
        "architectures": ["CodeGenForCausalLM"],
        "model_type": "codegen",
        "vocab_size": cfg.vocab_size,
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": cfg.ff_width,
        "n_positions": cfg.max_seq_len,
        "n_ctx": cfg.max_seq_len,
        "rotary_dim": cfg.rotary_dim or cfg.head_dim,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": cfg.norm_eps,
        "initializer_range": cfg.init_std,
        "tie_word_embeddings": cfg.tie_embeddings,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "use_cache": True,
    }
