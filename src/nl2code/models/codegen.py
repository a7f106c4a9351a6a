"""CodeGen-style decoder-only causal language model (the autoregressive family).

A stack of pre-norm blocks with rotary positions over a token embedding, a final RMSNorm and an
LM head (optionally tied to the embedding). ``forward`` maps token ids to a :class:`ModelOutput`;
losses live in ``nl2code.objectives`` and decoding in the samplers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nl2code.config import register
from nl2code.models.layers import (
    Block,
    MLPKind,
    RMSNorm,
    RotaryEmbedding,
    causal_padding_mask,
    init_normal_,
    residual_std,
)
from nl2code.models.outputs import ModelOutput


@register("model", "codegen")
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

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "max_seq_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.vocab_size < 0 or self.d_ff < 0:
            raise ValueError("vocab_size and d_ff must be >= 0 (0 = automatic)")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"d_model {self.d_model} / n_heads {self.n_heads} must be an even integer (rotary)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

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
            Block(cfg.d_model, cfg.n_heads, cfg.ff_width, cfg.mlp, cfg.dropout, cfg.norm_eps)
            for _ in range(cfg.n_layers)
        )
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.rotary = RotaryEmbedding(cfg.d_model // cfg.n_heads, cfg.max_seq_len, cfg.rope_theta)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
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
            nn.init.normal_(block.mlp.down.weight, mean=0.0, std=out_std, generator=generator)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> ModelOutput:
        """Run the LM.

        Args:
            input_ids: (B, T) token ids.
            attention_mask: optional (B, T) keep-mask (1 = real token). Not needed for right
                padding (causal attention never lets a real token see a later pad); needed for
                left padding.
            position_ids: optional (T,) or (B, T) positions; default ``0..T-1``.
        """
        seq_len = input_ids.shape[1]
        if seq_len > self.cfg.max_seq_len:
            raise ValueError(f"sequence length {seq_len} exceeds max_seq_len {self.cfg.max_seq_len}")
        if position_ids is None:
            position_ids = torch.arange(seq_len, device=input_ids.device)
        cos, sin = self.rotary(position_ids)
        attn_mask = causal_padding_mask(attention_mask) if attention_mask is not None else None
        x = self.drop(self.embed(input_ids))  # (B, T, D)
        for block in self.blocks:
            x = block(x, cos, sin, attn_mask, is_causal=True)
        hidden = self.norm(x)
        return ModelOutput(logits=self.lm_head(hidden), hidden=hidden)

    def num_parameters(self) -> int:
        """Number of distinct parameters (tied weights counted once)."""
        return sum(p.numel() for p in self.parameters())
