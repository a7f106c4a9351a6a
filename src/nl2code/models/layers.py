"""Transformer building blocks shared by every model: RMSNorm, rotary embeddings, attention, MLP, block.

Shapes: B batch, T sequence, D model width, H heads, Hd head width (D = H * Hd).
Nothing here knows about tokens, losses or sampling.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

MLPKind = Literal["gelu", "swiglu"]


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain; computed in float32 for bf16 stability."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (GPT-NeoX "rotate half" layout) with a precomputed table.

    The cos/sin table is a non-persistent buffer: it is derived from the config, so it is never
    written to checkpoints and follows the module across devices.
    """

    def __init__(self, head_dim: int, max_seq_len: int, theta: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary head_dim must be even, got {head_dim}")
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float64), inv_freq)  # (T, Hd/2)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``position_ids`` (T,) or (B, T), each < max_seq_len -> cos, sin (T, Hd/2) or (B, T, Hd/2)."""
        return self.cos[position_ids], self.sin[position_ids]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (B, H, T, Hd) by angles ``cos``/``sin`` of shape (T, Hd/2) or (B, T, Hd/2)."""
    if cos.dim() == 3:  # per-sequence positions: broadcast over heads
        cos, sin = cos[:, None], sin[:, None]
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    return out.to(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``.

    ``forward`` takes the rotary angles from outside so that one table serves every layer, and
    so that a key/value cache can later feed positions offset by the cached length.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = False):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = True,
    ) -> torch.Tensor:
        """``x`` (B, T, D); ``attn_mask`` bool (B, 1, T, T), True = may attend (overrides is_causal)."""
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, Hd)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal and attn_mask is None,
        )  # (B, H, T, Hd)
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    """Position-wise feed-forward: ``gelu`` (GPT-2/CodeGen) or ``swiglu`` (LLaMA-style)."""

    def __init__(self, d_model: int, d_ff: int, kind: MLPKind = "gelu", bias: bool = False):
        super().__init__()
        self.kind = kind
        if kind == "swiglu":
            self.gate = nn.Linear(d_model, d_ff, bias=bias)
        elif kind != "gelu":
            raise ValueError(f"unknown mlp kind {kind!r} (known: gelu, swiglu)")
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "swiglu":
            return self.down(F.silu(self.gate(x)) * self.up(x))
        return self.down(F.gelu(self.up(x), approximate="tanh"))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        mlp: MLPKind = "gelu",
        dropout: float = 0.0,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.attn_norm = RMSNorm(d_model, norm_eps)
        self.attn = Attention(d_model, n_heads, dropout)
        self.mlp_norm = RMSNorm(d_model, norm_eps)
        self.mlp = MLP(d_model, d_ff, mlp)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = True,
    ) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), cos, sin, attn_mask, is_causal))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


def causal_padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) keep-mask (True/1 = real token) -> bool (B, 1, T, T) causal mask hiding padded keys.

    Each query may always attend to itself, so rows of padded queries (e.g. left padding) are
    never fully masked; SDPA would return NaN for them and poison the batch.
    """
    keep = attention_mask.bool()
    T = keep.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=keep.device).tril()
    mask = causal[None] & keep[:, None, :]  # (B, T, T)
    mask |= torch.eye(T, dtype=torch.bool, device=keep.device)[None]
    return mask[:, None]


def init_normal_(module: nn.Module, std: float, generator: torch.Generator | None) -> None:
    """GPT-2 style init of one Linear/Embedding: N(0, std) weights, zero bias."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std, generator=generator)
        bias = getattr(module, "bias", None)
        if bias is not None:
            nn.init.zeros_(bias)


def residual_std(std: float, n_layers: int) -> float:
    """Std for projections that write into the residual stream (GPT-2: scaled by 1/sqrt(2L))."""
    return std / math.sqrt(2 * n_layers)
