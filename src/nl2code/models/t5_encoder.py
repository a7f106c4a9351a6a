"""A T5 / CodeT5 encoder, so CodeFusion's E can start from a pre-trained checkpoint (the paper's setup).

T5's encoder differs from our blocks in three ways, all kept here so its weights compute what they
were trained to: attention logits are not scaled by ``1/sqrt(d_kv)``; positions enter as a learned
bias per (bucketed relative distance, head), computed once and shared by every layer; and the MLP
is ``wo(relu(wi x))`` (T5, CodeT5) or ``wo(gelu_tanh(wi_0 x) * wi_1 x)`` (T5 v1.1, ``gated-gelu``).
Norms are RMSNorm without a bias (T5's LayerNorm), so ``layers.RMSNorm`` serves.

Shapes: B batch, S length, D model width, H heads, K = d_kv per head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from nl2code.models.layers import RMSNorm


@dataclass(frozen=True)
class T5EncoderConfig:
    """Shape of a T5 encoder (the fields of a T5 ``config.json`` that the encoder reads)."""

    vocab_size: int = 32100
    d_model: int = 512
    d_kv: int = 64
    num_heads: int = 8
    d_ff: int = 2048
    num_layers: int = 6
    feed_forward_proj: Literal["relu", "gated-gelu"] = "relu"
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6


def relative_buckets(length: int, num_buckets: int, max_distance: int, device: torch.device) -> torch.Tensor:
    """(S, S) bucket of each key-minus-query offset, bidirectional: half the buckets per sign,
    exact up to ``num_buckets / 4``, then logarithmic up to ``max_distance``."""
    pos = torch.arange(length, device=device)
    rel = pos[None, :] - pos[:, None]  # (query, key) -> key - query
    half = num_buckets // 2
    out = (rel > 0).long() * half
    n = rel.abs()
    exact = half // 2
    far = exact + (torch.log(n.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (half - exact)).long()
    return out + torch.where(n < exact, n, far.clamp(max=half - 1))


class T5Layer(nn.Module):
    """One encoder block: ``x + attn(norm(x), bias)`` then ``x + ff(norm(x))``."""

    def __init__(self, cfg: T5EncoderConfig):
        super().__init__()
        inner = cfg.num_heads * cfg.d_kv
        self.n_heads, self.d_kv = cfg.num_heads, cfg.d_kv
        self.attn_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.q, self.k, self.v = (nn.Linear(cfg.d_model, inner, bias=False) for _ in range(3))
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        self.ff_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.gated = cfg.feed_forward_proj == "gated-gelu"
        self.wi = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wi_1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False) if self.gated else None
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``x`` (B, S, D); ``bias`` (B | 1, H, S, S) position bias plus the padding mask."""
        B, S, _ = x.shape
        h = self.attn_norm(x)
        q, k, v = (lin(h).view(B, S, self.n_heads, self.d_kv).transpose(1, 2) for lin in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0)  # (B, H, S, K)
        x = x + self.o(y.transpose(1, 2).reshape(B, S, -1))
        h = self.ff_norm(x)
        h = F.gelu(self.wi(h), approximate="tanh") * self.wi_1(h) if self.gated else F.relu(self.wi(h))
        return x + self.wo(h)


class T5Encoder(nn.Module):
    """T5's encoder: ``ids (B, S), mask (B, S) -> (B, S, D)`` (final norm applied)."""

    def __init__(self, cfg: T5EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.position_bias = nn.Embedding(cfg.relative_attention_num_buckets, cfg.num_heads)
        self.layers = nn.ModuleList(T5Layer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        S = ids.shape[1]
        buckets = relative_buckets(
            S, self.cfg.relative_attention_num_buckets, self.cfg.relative_attention_max_distance, ids.device
        )
        bias = self.position_bias(buckets).permute(2, 0, 1)[None].float()  # (1, H, S, S)
        if mask is not None:  # padded keys get the most negative float, as T5 does
            bias = bias + (~mask.bool())[:, None, None, :].float() * torch.finfo(torch.float32).min
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x, bias)
        return self.norm(x)
