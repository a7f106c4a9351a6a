"""CodeGen-style decoder-only causal language model (the autoregressive family).

A stack of pre-norm blocks with rotary positions over a token embedding, a final RMSNorm and an
LM head (optionally tied to the embedding). ``forward`` maps token ids to a :class:`ModelOutput`;
losses live in ``nl2code.objectives`` and decoding in ``nl2code.sampling``.

Options: a key/value cache for incremental decoding (:meth:`CodeGenLM.new_cache`), a prefix-LM
mask (bidirectional attention over a prefix, causal after it), sparse MoE feed-forward blocks
(``moe``), and with ``mlp: swiglu``, ``bias: false`` the architecture is exactly LLaMA's (see
``nl2code.models.hf_export``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nl2code.models.copy import CopyHead
from nl2code.models.layers import (
    Block,
    BlockOptions,
    KVCache,
    MLPKind,
    NormKind,
    RMSNorm,
    RopeScaling,
    RotaryEmbedding,
    init_normal_,
    make_norm,
    residual_std,
    rotary_inv_freq,
)
from nl2code.models.layers import attention_mask as build_attention_mask
from nl2code.models.moe import MoE, MoEConfig
from nl2code.models.outputs import ModelOutput


@dataclass(frozen=True)
class CodeGenConfig:
    """Architecture of a :class:`CodeGenLM`.

    Attributes:
        vocab_size: embedding rows; 0 means "take it from the tokenizer" (resolved by the trainer
            before the model is built and saved resolved in the run's config.yaml).
        d_model: residual width.
        n_layers: number of transformer blocks.
        n_heads: attention heads; ``d_model / n_heads`` must be even (rotary).
        d_ff: MLP hidden width; 0 means ``4 * d_model`` (gelu) or ``8/3 * d_model`` rounded to 8 (swiglu).
        mlp: ``gelu`` or ``swiglu``.
        max_seq_len: longest sequence (rotary table size).
        dropout: residual and attention dropout during training.
        tie_embeddings: share the LM head with the token embedding.
        rope_theta: rotary base.
        norm_eps: RMSNorm epsilon.
        init_std: std of the normal init (residual projections are further scaled by 1/sqrt(2L)).
        bias: biases on the attention and MLP projections (LLaMA: none).
        prefix_lm: attention is bidirectional over the prompt (the tokens before the first
            training target; at generation time the prompt) and causal after it. CodeGen2 found
            no gain from it; off by default.
        copy_head: mix a pointer over the context into the next-token distribution (``nl2code.models.copy``):
            the model may copy a request's values it never saw in training; logits are then log-probabilities.
        moe: sparse mixture-of-experts feed-forward blocks (keys n_experts, top_k, gating, every,
            capacity_factor, switch_coef, z_coef... of ``MoEConfig``; ``every`` selects the blocks), or null
            for dense; the balancing loss is returned as ``ModelOutput.aux_loss``.

    Switches for imported checkpoints (``nl2code hf import``); the defaults keep the model above:
        n_kv_heads: key/value heads; 0 = n_heads, fewer = grouped-query attention (Llama 3, Qwen2, Mistral).
        rotary_dim: rotated dims per head; 0 = all (CodeGen rotates 32 of 64).
        rope_scaling: rotary frequency scaling (``RopeScaling``: linear or llama3), or null.
        norm: ``rmsnorm`` or ``layernorm`` (CodeGen).
        parallel_residual: ``x + attn(ln(x)) + mlp(ln(x))`` with one norm per block (CodeGen/GPT-J).
        qkv_bias, out_bias, mlp_bias: biases on those projections even when ``bias`` is false
            (Qwen2: q/k/v only; CodeGen: MLP only).
        head_bias: a bias on the LM head (CodeGen).
    """

    vocab_size: int = 0
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 0
    mlp: MLPKind = "gelu"
    max_seq_len: int = 512
    dropout: float = 0.0
    tie_embeddings: bool = True
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02
    bias: bool = False
    prefix_lm: bool = False
    copy_head: bool = False
    moe: MoEConfig | None = None
    n_kv_heads: int = 0
    rotary_dim: int = 0
    rope_scaling: RopeScaling | None = None
    norm: NormKind = "rmsnorm"
    parallel_residual: bool = False
    qkv_bias: bool = False
    out_bias: bool = False
    mlp_bias: bool = False
    head_bias: bool = False

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "max_seq_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.vocab_size < 0 or self.d_ff < 0:
            raise ValueError("vocab_size and d_ff must be >= 0 (0 = automatic)")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model {self.d_model} / n_heads {self.n_heads} must be an even integer (rotary)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.n_kv_heads < 0 or (self.n_kv_heads and self.n_heads % self.n_kv_heads):
            raise ValueError(f"n_kv_heads {self.n_kv_heads} must divide n_heads {self.n_heads} (0 = n_heads)")
        if self.rotary_dim < 0 or self.rotary_dim % 2 or self.rotary_dim > self.head_dim:
            raise ValueError(f"rotary_dim {self.rotary_dim} must be even and <= head dim {self.head_dim} (0 = all)")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    def block_options(self) -> BlockOptions:
        return BlockOptions(
            n_kv_heads=self.n_kv_heads,
            rotary_dim=self.rotary_dim,
            norm=self.norm,
            parallel_residual=self.parallel_residual,
            qkv_bias=self.bias or self.qkv_bias,
            out_bias=self.bias or self.out_bias,
            mlp_bias=self.bias or self.mlp_bias,
        )

    @property
    def ff_width(self) -> int:
        if self.d_ff:
            return self.d_ff
        if self.mlp == "swiglu":  # keep parameter count close to the 4*d gelu MLP
            return (8 * self.d_model // 3 + 7) // 8 * 8
        return 4 * self.d_model


class CodeGenLM(nn.Module):
    """Decoder-only causal LM: ``input_ids (B, T) -> ModelOutput(logits (B, T, V), hidden (B, T, D))``."""

    def __init__(self, cfg: CodeGenConfig, generator: torch.Generator | None = None):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("CodeGenConfig.vocab_size must be resolved (> 0) before building the model")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            Block(
                cfg.d_model,
                cfg.n_heads,
                cfg.ff_width,
                cfg.mlp,
                cfg.dropout,
                cfg.norm_eps,
                bias=cfg.bias,
                moe=cfg.moe,
                layer_index=i,
                with_aux=True,
                options=cfg.block_options(),
            )
            for i in range(cfg.n_layers)
        )
        self.norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)
        self.rotary = rotary_of(cfg)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=cfg.head_bias)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.copy = CopyHead(cfg.d_model) if cfg.copy_head else None
        self.init_weights(generator)

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise every weight from ``generator`` (deterministic given its seed)."""
        for module in self.modules():
            init_normal_(module, self.cfg.init_std, generator)
            if isinstance(module, RMSNorm):
                module.weight.fill_(1.0)
        # Projections that add into the residual stream start smaller so depth doesn't blow up the
        # residual variance (GPT-2).
        out_std = residual_std(self.cfg.init_std, self.cfg.n_layers)
        for block in self.blocks:
            nn.init.normal_(block.attn.out.weight, mean=0.0, std=out_std, generator=generator)
            for mlp in block.mlp.experts if isinstance(block.mlp, MoE) else [block.mlp]:
                nn.init.normal_(mlp.down.weight, mean=0.0, std=out_std, generator=generator)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        *,
        cache: KVCache | None = None,
        prefix_mask: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        compute_logits: bool = True,
    ) -> ModelOutput:
        """Run the LM on ``input_ids`` (B, T), appending to ``cache`` when one is given.

        Args:
            input_ids: (B, T) token ids (with a cache: the new tokens only).
            attention_mask: optional (B, T) keep-mask of these tokens (1 = real token). Right
                padding needs none (causal attention never lets a real token see a later pad)
                but may pass it so MoE blocks do not route pads; left padding needs it.
            position_ids: optional (T,) or (B, T) positions; default: the number of real tokens
                before each token (``0..T-1`` without padding), continuing from the cache.
            cache: a :class:`KVCache` from :meth:`new_cache`; this call's keys/values are added.
            prefix_mask: optional (B, T) True on prefix tokens, which attend to each other
                bidirectionally (prefix-LM). With a cache, only on the first call (empty cache).
            logits_to_keep: when > 0, logits of the last ``logits_to_keep`` positions only
                (B, logits_to_keep, V): a sampler's prefill needs one row per prompt, not B x T x V.
            compute_logits: False returns ``logits=None`` for a loss that applies ``lm_head`` itself
                (refused with a copy head: its logits need the pointer).
        """
        B, T = input_ids.shape
        start = cache.length if cache is not None else 0
        if start + T > self.cfg.max_seq_len:
            raise ValueError(f"sequence length {start + T} exceeds max_seq_len {self.cfg.max_seq_len}")
        if prefix_mask is not None and start:
            raise ValueError("prefix_mask is only supported on the first forward over a cache")
        keep_new = attention_mask.bool() if attention_mask is not None else None
        keep = keep_new
        if cache is not None:
            if keep_new is None:
                ones = torch.ones(B, T, dtype=torch.bool, device=input_ids.device)
                keep = cache.extend_keep(ones, all_real=True)  # (B, start + T)
            else:
                keep = cache.extend_keep(keep_new)
        # Without padding anywhere in the cache the positions are a plain range and a single new
        # query may attend to every cached key: the per-step cumsum and mask are skipped.
        dense_cache = cache is not None and not cache.has_padding and prefix_mask is None
        # Full-width rotary tables once for every layer; plain positions are a slice of the table.
        if position_ids is None and (keep is None or dense_cache):
            cos, sin = self.rotary.full_range(start, T)
        else:
            if position_ids is None:
                position_ids = (keep.long().cumsum(-1) - 1).clamp(min=0)[:, start:]
            cos, sin = self.rotary.full(position_ids)
        attn_mask = None
        needs_mask = cache is not None or prefix_mask is not None or (keep is not None and not _right_padded(keep))
        if needs_mask and not (dense_cache and T == 1):
            full = keep if keep is not None else torch.ones(B, T, dtype=torch.bool, device=input_ids.device)
            attn_mask = build_attention_mask(full, start, prefix_mask)
        x = self.drop(self.embed(input_ids))  # (B, T, D)
        aux_total = None
        for i, block in enumerate(self.blocks):
            kv = cache.layer(i) if cache is not None else None
            x, aux = block(x, cos, sin, attn_mask, True, kv, keep_new)
            if aux is not None:
                aux_total = aux if aux_total is None else aux_total + aux
        hidden = self.norm(x)
        kept = hidden[:, -logits_to_keep:] if logits_to_keep > 0 else hidden
        if self.copy is not None:
            if not compute_logits:
                raise ValueError("a model with a copy head computes its own logits (compute_logits=True)")
            logits = self._copy_logits(input_ids, hidden, kept, keep, cache, start)
        else:
            logits = self.lm_head(kept) if compute_logits else None
        if cache is not None:
            cache.advance(T)
        return ModelOutput(logits=logits, hidden=hidden, aux_loss=aux_total)

    def _copy_logits(
        self,
        input_ids: torch.Tensor,
        hidden: torch.Tensor,
        kept: torch.Tensor,
        keep: torch.Tensor | None,
        cache: KVCache | None,
        start: int,
    ) -> torch.Tensor:
        """The copy head's log-probabilities at the kept positions; the context's keys come from the cache."""
        keys = self.copy.key(hidden)
        ids = input_ids
        if cache is not None:
            end = start + input_ids.shape[1]
            if "copy_keys" not in cache.extras:
                B, n = cache.batch_size, cache.max_len
                cache.extras["copy_keys"] = keys.new_zeros(B, n, keys.shape[-1])
                cache.extras["copy_ids"] = input_ids.new_zeros(B, n)
            cache.extras["copy_keys"][:, start:end] = keys
            cache.extras["copy_ids"][:, start:end] = input_ids
            keys, ids = cache.extras["copy_keys"][:, :end], cache.extras["copy_ids"][:, :end]
        first = start + hidden.shape[1] - kept.shape[1]
        return self.copy(self.lm_head(kept), kept, keys, ids, keep, first)

    def new_cache(self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> KVCache:
        """An empty :class:`KVCache` for ``batch_size`` rows and up to ``max_len`` positions."""
        cfg = self.cfg
        ref = self.embed.weight
        return KVCache(
            cfg.n_layers,
            batch_size,
            cfg.kv_heads,
            cfg.head_dim,
            min(max_len or cfg.max_seq_len, cfg.max_seq_len),
            dtype=dtype or ref.dtype,
            device=ref.device,
        )

    def moe_layers(self) -> list[MoE]:
        """The MoE feed-forward modules, shallowest first (empty for a dense model)."""
        return [b.mlp for b in self.blocks if isinstance(b.mlp, MoE)]

    def moe_metrics(self) -> dict[str, torch.Tensor]:
        """Routing health of the last forward: the most loaded expert's share relative to a
        perfectly balanced one (1.0 = balanced), worst layer; empty for a dense model."""
        loads = []
        for moe in self.moe_layers():
            if moe.last_stats is not None:
                counts = moe.last_stats.counts.float()
                loads.append(counts.max() / counts.mean().clamp(min=1e-9))
        return {"moe_max_load": torch.stack(loads).max()} if loads else {}

    def num_parameters(self) -> int:
        """Number of distinct parameters (tied weights counted once)."""
        return sum(p.numel() for p in self.parameters())


def rotary_of(cfg: CodeGenConfig) -> RotaryEmbedding:
    """The rotary table of ``cfg`` (derived, never saved: rebuilt after loading on the meta device)."""
    dim = cfg.rotary_dim or cfg.head_dim
    inv_freq = rotary_inv_freq(dim, cfg.rope_theta, cfg.rope_scaling) if cfg.rope_scaling else None
    return RotaryEmbedding(dim, cfg.max_seq_len, cfg.rope_theta, inv_freq)


def _right_padded(keep: torch.Tensor) -> bool:
    """True when every row is real tokens followed only by padding: plain causal attention is
    then exact for the real tokens, and the fast SDPA path (no explicit mask) can be used."""
    return bool((keep[:, 1:] <= keep[:, :-1]).all())
