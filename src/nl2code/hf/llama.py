"""The LLaMA family (``llama``, ``mistral``, ``qwen2``; CodeLlama and DeepSeek-Coder are ``llama``)
and its sparse sibling ``mixtral``, in both directions.

All are pre-norm RMSNorm blocks with rotary positions in the "rotate half" layout (HF's
checkpoints are already permuted to it), a SwiGLU MLP ``down(silu(gate(x)) * up(x))`` and
grouped-query attention. They differ in biases (Llama: ``attention_bias`` on q/k/v/o and
``mlp_bias``; Qwen2: q/k/v only), rope scaling (Llama: ``linear``/``llama3``), sliding-window
attention (Mistral v0.1) and, for Mixtral, a top-k softmax-routed MoE of SwiGLU experts, which is
our ``MoE`` with ``gating: softmax, renormalize: true``.
"""

from __future__ import annotations

from typing import Any

from nl2code.hf.mapping import Link, Part, link
from nl2code.models.codegen import CodeGenConfig
from nl2code.models.layers import RopeScaling
from nl2code.models.moe import MoEConfig

FAMILIES = ("llama", "mistral", "qwen2", "mixtral")


class UnsupportedCheckpoint(ValueError):
    """A checkpoint setting nl2code cannot express; the message names the key and why."""


def rope_of(config: dict[str, Any], where: str) -> tuple[float, RopeScaling | None]:
    """``(theta, scaling)`` from either the old (``rope_theta``/``rope_scaling``) or the
    transformers-5 (``rope_parameters``) keys."""
    params = dict(config.get("rope_parameters") or {})
    scaling = dict(config.get("rope_scaling") or {})
    merged = {**params, **scaling}
    theta = float(merged.get("rope_theta", config.get("rope_theta", 10000.0)))
    kind = merged.get("rope_type", merged.get("type", "default")) or "default"
    if float(merged.get("partial_rotary_factor", 1.0)) != 1.0:
        raise UnsupportedCheckpoint(f"{where}: partial_rotary_factor is not supported for this family")
    if kind == "default":
        return theta, None
    if kind == "linear":
        return theta, RopeScaling("linear", float(merged["factor"]))
    if kind == "llama3":
        return theta, RopeScaling(
            "llama3",
            float(merged["factor"]),
            float(merged.get("low_freq_factor", 1.0)),
            float(merged.get("high_freq_factor", 4.0)),
            int(merged.get("original_max_position_embeddings", 8192)),
        )
    raise UnsupportedCheckpoint(
        f"{where}: rope scaling {kind!r} is not supported (supported: none, linear, llama3); "
        "remove rope_scaling from config.json to run it at its original context length"
    )


def config_from_hf(config: dict[str, Any], where: str, max_seq_len: int) -> CodeGenConfig:
    """Our config for a ``llama``/``mistral``/``qwen2``/``mixtral`` ``config.json``."""
    kind = config["model_type"]
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    kv = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // heads)
    if head_dim * heads != hidden:
        raise UnsupportedCheckpoint(f"{where}: head_dim {head_dim} x {heads} heads != hidden_size {hidden}")
    if config.get("hidden_act", "silu") != "silu":
        raise UnsupportedCheckpoint(f"{where}: hidden_act {config['hidden_act']!r}; only silu (SwiGLU) is supported")
    theta, scaling = rope_of(config, where)
    length = int(config.get("max_position_embeddings", 2048))
    window = config.get("sliding_window") if (kind != "qwen2" or config.get("use_sliding_window")) else None
    if window:  # exact only while every sequence fits in the window: cap the length there
        length = min(length, int(window))
    attn_bias = bool(config.get("attention_bias", False))
    moe = None
    if kind == "mixtral":
        moe = MoEConfig(
            n_experts=int(config["num_local_experts"]),
            top_k=int(config["num_experts_per_tok"]),
            gating="softmax",
            renormalize=True,
            switch_coef=float(config.get("router_aux_loss_coef", 0.01)),
            z_coef=0.0,
        )
    return CodeGenConfig(
        vocab_size=int(config["vocab_size"]),
        d_model=hidden,
        n_layers=int(config["num_hidden_layers"]),
        n_heads=heads,
        n_kv_heads=0 if kv == heads else kv,
        d_ff=int(config["intermediate_size"]),
        mlp="swiglu",
        max_seq_len=min(length, max_seq_len),
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        rope_theta=theta,
        rope_scaling=scaling,
        norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        init_std=float(config.get("initializer_range", 0.02)),
        qkv_bias=attn_bias or kind == "qwen2",
        out_bias=attn_bias,
        mlp_bias=bool(config.get("mlp_bias", False)),
        moe=moe,
    )


def links(cfg: CodeGenConfig, names: set[str] | None = None) -> list[Link]:
    """Our parameters <-> HF LLaMA/Mixtral tensor names. ``names`` (the checkpoint's, on import)
    selects Mixtral's expert layout: per-expert ``w1/w2/w3`` or transformers 5's fused tensors."""
    q, kv = cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    out = [link("embed.weight", "model.embed_tokens.weight"), link("norm.weight", "model.norm.weight")]
    if not cfg.tie_embeddings:
        out.append(link("lm_head.weight", "lm_head.weight"))
    for i in range(cfg.n_layers):
        hf, us = f"model.layers.{i}.", f"blocks.{i}."
        a = hf + "self_attn."
        out += [
            link(us + "attn_norm.weight", hf + "input_layernorm.weight"),
            link(us + "mlp_norm.weight", hf + "post_attention_layernorm.weight"),
            link(
                us + "attn.qkv.weight", a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight", sizes=(q, kv, kv)
            ),
            link(us + "attn.out.weight", a + "o_proj.weight"),
        ]
        if cfg.bias or cfg.qkv_bias:
            out.append(
                link(us + "attn.qkv.bias", a + "q_proj.bias", a + "k_proj.bias", a + "v_proj.bias", sizes=(q, kv, kv))
            )
        if cfg.bias or cfg.out_bias:
            out.append(link(us + "attn.out.bias", a + "o_proj.bias"))
        if cfg.moe is None:
            for ours, theirs in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
                out.append(link(f"{us}mlp.{ours}.weight", f"{hf}mlp.{theirs}.weight"))
                if cfg.bias or cfg.mlp_bias:
                    out.append(link(f"{us}mlp.{ours}.bias", f"{hf}mlp.{theirs}.bias"))
        else:
            out += _expert_links(cfg, i, names)
    return out


def _expert_links(cfg: CodeGenConfig, i: int, names: set[str] | None) -> list[Link]:
    hf, us = f"model.layers.{i}.", f"blocks.{i}.mlp."
    fused = names is not None and hf + "mlp.experts.gate_up_proj" in names
    if not fused:  # the layout of every released Mixtral checkpoint (and of our export)
        moe = hf + "block_sparse_moe."
        out = [link(us + "router.gate.weight", moe + "gate.weight")]
        for e in range(cfg.moe.n_experts):
            for ours, theirs in (("gate", "w1"), ("up", "w3"), ("down", "w2")):
                out.append(link(f"{us}experts.{e}.{ours}.weight", f"{moe}experts.{e}.{theirs}.weight"))
        return out
    # transformers >= 5 in memory: gate_up_proj (E, 2F, D) and down_proj (E, D, F); rows are the last dim
    f, d = cfg.ff_width, cfg.d_model
    out = [link(us + "router.gate.weight", hf + "mlp.gate.weight")]
    for e in range(cfg.moe.n_experts):
        gu, dn = hf + "mlp.experts.gate_up_proj", hf + "mlp.experts.down_proj"
        out += [
            Link(f"{us}experts.{e}.gate.weight", (Part(gu, (e * 2 * f, e * 2 * f + f)),)),
            Link(f"{us}experts.{e}.up.weight", (Part(gu, (e * 2 * f + f, (e + 1) * 2 * f)),)),
            Link(f"{us}experts.{e}.down.weight", (Part(dn, (e * d, (e + 1) * d)),)),
        ]
    return out


def check_exportable(cfg: CodeGenConfig) -> str:
    """The HF model_type ``cfg`` exports to (llama, qwen2 or mixtral); UnsupportedCheckpoint if none."""
    if cfg.mlp != "swiglu" or cfg.norm != "rmsnorm" or cfg.parallel_residual or cfg.rotary_dim or cfg.head_bias:
        raise UnsupportedCheckpoint(
            "not a LLaMA-family model (needs mlp: swiglu, norm: rmsnorm, sequential "
            "residual, full rotary, no LM-head bias)"
        )
    if cfg.prefix_lm:
        raise UnsupportedCheckpoint("model.prefix_lm is set; LLaMA-family attention is causal only")
    biased = cfg.bias or cfg.qkv_bias or cfg.out_bias or cfg.mlp_bias
    if cfg.moe is not None:
        m = cfg.moe
        if m.gating != "softmax" or not m.renormalize or m.capacity_factor is not None or m.every != 1:
            raise UnsupportedCheckpoint(
                "model.moe: Mixtral routes every block with renormalised softmax top-k and "
                "no capacity limit (needs gating: softmax, renormalize: true, "
                "capacity_factor: null, every: 1)"
            )
        if biased:
            raise UnsupportedCheckpoint("model.moe with biases: Mixtral has none")
        return "mixtral"
    if (cfg.qkv_bias and not cfg.bias and not cfg.out_bias and not cfg.mlp_bias) and not cfg.rope_scaling:
        return "qwen2"
    if cfg.qkv_bias != cfg.out_bias and not cfg.bias:
        raise UnsupportedCheckpoint("q/k/v biases without an output bias and with other options: no HF equivalent")
    return "llama"


def hf_config(cfg: CodeGenConfig, model_type: str) -> dict[str, Any]:
    """The ``config.json`` of ``cfg`` as ``model_type`` (from :func:`check_exportable`)."""
    arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mixtral": "MixtralForCausalLM"}[model_type]
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    scaling = None
    if cfg.rope_scaling is not None:
        s = cfg.rope_scaling
        scaling = {"rope_type": s.type, "type": s.type, "factor": s.factor}
        if s.type == "llama3":
            scaling |= {
                "low_freq_factor": s.low_freq_factor,
                "high_freq_factor": s.high_freq_factor,
                "original_max_position_embeddings": s.original_max_seq_len,
            }
        rope = {**scaling, "rope_theta": cfg.rope_theta}
    out: dict[str, Any] = {
        "architectures": [arch],
        "model_type": model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ff_width,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        # transformers < 5 reads rope_theta/rope_scaling, >= 5 rope_parameters; both say the same
        "rope_theta": cfg.rope_theta,
        "rope_scaling": scaling,
        "rope_parameters": rope,
        "attention_dropout": 0.0,
        "tie_word_embeddings": cfg.tie_embeddings,
        "initializer_range": cfg.init_std,
        "use_cache": True,
    }
    if model_type == "llama":
        out |= {"attention_bias": cfg.bias or cfg.qkv_bias, "mlp_bias": cfg.bias or cfg.mlp_bias}
    if model_type == "qwen2":
        out |= {"use_sliding_window": False, "sliding_window": None, "max_window_layers": cfg.n_layers}
    if model_type == "mixtral":
        out |= {
            "num_local_experts": cfg.moe.n_experts,
            "num_experts_per_tok": cfg.moe.top_k,
            "router_aux_loss_coef": cfg.moe.switch_coef,
            "router_jitter_noise": 0.0,
            "sliding_window": None,
            "output_router_logits": False,
        }
    return out
