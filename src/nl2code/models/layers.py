"""Transformer building blocks shared by every model: RMSNorm, rotary embeddings, attention, MLP,
block, attention masks and the key/value cache used for incremental decoding.

Shapes: B batch, T sequence, D model width, H heads, Hd head width (D = H * Hd), S key length.
Nothing here knows about tokens, losses or sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

MLPKind = Literal["gelu", "swiglu"]
NormKind = Literal["rmsnorm", "layernorm"]

if TYPE_CHECKING:
    from nl2code.models.moe import MoEConfig


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain; computed in float32 for bf16 stability."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.rms_norm is one fused kernel (the hand-written pow/mean/rsqrt/mul chain was 1.5x slower on CPU).
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps).to(x.dtype)


def make_norm(kind: NormKind, dim: int, eps: float) -> nn.Module:
    """RMSNorm (LLaMA) or LayerNorm with a bias (GPT-J/CodeGen)."""
    if kind == "rmsnorm":
        return RMSNorm(dim, eps)
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps)
    raise ValueError(f"unknown norm {kind!r} (known: rmsnorm, layernorm)")


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (GPT-NeoX "rotate half" layout) with a precomputed table.

    The cos/sin table is a non-persistent buffer: it is derived from the config, so it is never
    written to checkpoints and follows the module across devices. ``inv_freq`` (head_dim/2,)
    replaces the plain ``theta`` frequencies when given (rope scaling, see :func:`rotary_inv_freq`).
    """

    def __init__(self, head_dim: int, max_seq_len: int, theta: float = 10000.0, inv_freq: torch.Tensor | None = None):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary head_dim must be even, got {head_dim}")
        if inv_freq is None:
            inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float64), inv_freq)  # (T, Hd/2)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)
        # The full-width tables too, so that a forward need not rebuild them (two cats and a neg per
        # layer, which was a visible share of a single-token decoding step).
        cos_full, sin_signed = rotary_tables(self.cos, self.sin)
        self.register_buffer("cos_full", cos_full, persistent=False)
        self.register_buffer("sin_signed", sin_signed, persistent=False)

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``position_ids`` (T,) or (B, T), each < max_seq_len -> cos, sin (T, Hd/2) or (B, T, Hd/2)."""
        return self.cos[position_ids], self.sin[position_ids]

    def full(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`forward`, but the full-width tables of :func:`rotary_tables` (..., Hd)."""
        return self.cos_full[position_ids], self.sin_signed[position_ids]

    def full_range(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-width tables of positions ``start .. start + length - 1`` (length, Hd), as views (no copy)."""
        if start + length > self.cos_full.shape[0]:
            raise IndexError(f"positions up to {start + length - 1} exceed the rotary table ({self.cos_full.shape[0]})")
        return self.cos_full[start : start + length], self.sin_signed[start : start + length]


@dataclass(frozen=True)
class RopeScaling:
    """Rotary frequency scaling of long-context checkpoints (HF ``rope_scaling``).

    Attributes:
        type: ``linear`` (positions divided by ``factor``: CodeLlama, DeepSeek-Coder) or ``llama3``
            (low frequencies divided by ``factor``, high ones kept, a smooth ramp between).
        factor: the scaling factor.
        low_freq_factor, high_freq_factor, original_max_seq_len: ``llama3`` only.
    """

    type: Literal["linear", "llama3"] = "linear"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_seq_len: int = 8192

    def __post_init__(self) -> None:
        if self.factor <= 0 or self.high_freq_factor <= self.low_freq_factor:
            raise ValueError("rope_scaling: need factor > 0 and high_freq_factor > low_freq_factor")


def rotary_inv_freq(head_dim: int, theta: float, scaling: RopeScaling | None = None) -> torch.Tensor:
    """(head_dim/2,) float64 rotary frequencies, scaled as ``scaling`` says."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    if scaling is None:
        return inv_freq
    if scaling.type == "linear":
        return inv_freq / scaling.factor
    # llama3: wavelengths longer than the original context / low_freq_factor are slowed down by
    # `factor`, those shorter than context / high_freq_factor kept, the band between interpolated.
    wavelen = 2 * math.pi / inv_freq
    ctx = scaling.original_max_seq_len
    smooth = (ctx / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
    mixed = (1 - smooth) * inv_freq / scaling.factor + smooth * inv_freq
    out = torch.where(wavelen > ctx / scaling.low_freq_factor, inv_freq / scaling.factor, inv_freq)
    medium = (wavelen >= ctx / scaling.high_freq_factor) & (wavelen <= ctx / scaling.low_freq_factor)
    return torch.where(medium, mixed, out)


def rotary_tables(cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Half-width angles (..., Hd/2) -> full-width ``(cos, cos)`` and signed ``(-sin, sin)`` (..., Hd)."""
    return torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)


def rotate(x: torch.Tensor, cos_full: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """``x (..., Hd) * cos + swap_halves(x) * sin`` with tables from :func:`rotary_tables` (broadcast).

    Same result as ``cat(x1 cos - x2 sin, x2 cos + x1 sin)`` in three kernels instead of seven, which
    made rotary the largest non-matmul cost of a CPU training step.
    """
    swapped = x.unflatten(-1, (2, -1)).flip(-2).flatten(-2)  # (x2, x1)
    return torch.addcmul(x * cos_full, swapped, sin_signed)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (B, H, T, Hd) by angles ``cos``/``sin`` of shape (T, Hd/2) or (B, T, Hd/2)."""
    if cos.dim() == 3:  # per-sequence positions: broadcast over heads
        cos, sin = cos[:, None], sin[:, None]
    return rotate(x.float(), *rotary_tables(cos, sin)).to(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``.

    ``forward`` takes the rotary angles from outside so that one table serves every layer, and
    so that a key/value cache can feed positions offset by the cached length. With ``kv`` (this
    layer's slot of a :class:`KVCache`) the new keys/values are appended to the cached ones and the
    queries attend over both; the caller must then pass an explicit ``attn_mask`` (see
    :func:`attention_mask`) whenever more than one query is new.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        bias: bool = False,
        *,
        n_kv_heads: int = 0,
        rotary_dim: int = 0,
        qkv_bias: bool | None = None,
        out_bias: bool | None = None,
    ):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads or n_heads  # < n_heads: grouped-query attention
        if n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        self.head_dim = d_model // n_heads
        self.rotary_dim = rotary_dim or self.head_dim  # < head_dim: only the first dims rotate (CodeGen)
        self.dropout = dropout
        # Rows of the fused projection: H query heads, then Hkv key heads, then Hkv value heads.
        width = (n_heads + 2 * self.n_kv_heads) * self.head_dim
        self.qkv = nn.Linear(d_model, width, bias=bias if qkv_bias is None else qkv_bias)
        self.out = nn.Linear(d_model, d_model, bias=bias if out_bias is None else out_bias)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = True,
        kv: LayerKV | None = None,
    ) -> torch.Tensor:
        """``x`` (B, T, D); ``attn_mask`` bool (B, 1, T, S), True = may attend (overrides is_causal).

        ``cos``/``sin``: half-width angles (T | B T, Hd/2), or the full-width tables of
        :func:`rotary_tables` (T | B T, Hd), which a stack computes once for all its layers.
        """
        B, T, D = x.shape
        H, Hkv, rd = self.n_heads, self.n_kv_heads, self.rotary_dim
        qkv = self.qkv(x).view(B, T, H + 2 * Hkv, self.head_dim)
        if cos.shape[-1] != rd:
            cos, sin = rotary_tables(cos, sin)
        # Rotate q and k together in the projection's own layout (one pass over contiguous rows).
        c, s = cos[..., None, :], sin[..., None, :]  # (T | B T, 1, rd)
        qk = qkv[:, :, : H + Hkv]  # (B, T, H + Hkv, Hd)
        if rd == self.head_dim:
            qk = rotate(qk.float(), c, s).to(qkv.dtype)
        else:
            qk = torch.cat((rotate(qk[..., :rd].float(), c, s).to(qkv.dtype), qk[..., rd:]), dim=-1)
        q, k = qk[:, :, :H].transpose(1, 2), qk[:, :, H:].transpose(1, 2)  # (B, H | Hkv, T, Hd)
        v = qkv[:, :, H + Hkv :].transpose(1, 2)  # (B, Hkv, T, Hd)
        if kv is not None:
            if attn_mask is None and T > 1:
                raise ValueError("attention over a KV cache with several new queries needs an explicit attn_mask")
            k, v = kv.update(k, v)  # (B, H, S, Hd) with S = cached + T
        gqa = {"enable_gqa": True} if Hkv != H else {}  # query head h reads kv head h // (H / Hkv)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal and attn_mask is None and kv is None,
            **gqa,
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


@dataclass(frozen=True)
class BlockOptions:
    """Switches of imported architectures; the defaults are the original nl2code block.

    Attributes:
        n_kv_heads: key/value heads (0 = n_heads; fewer = grouped-query attention).
        rotary_dim: rotated dims per head (0 = all; CodeGen rotates the first 32 of 64).
        norm: ``rmsnorm`` or ``layernorm``.
        parallel_residual: ``x + attn(n(x)) + mlp(n(x))`` with one norm (GPT-J/CodeGen).
        qkv_bias, out_bias, mlp_bias: biases on those projections (None = ``bias``).
    """

    n_kv_heads: int = 0
    rotary_dim: int = 0
    norm: NormKind = "rmsnorm"
    parallel_residual: bool = False
    qkv_bias: bool | None = None
    out_bias: bool | None = None
    mlp_bias: bool | None = None


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``.

    Args:
        bias: biases on the attention and MLP projections (LLaMA/CodeGen2.5 have none).
        options: :class:`BlockOptions` of imported architectures (GQA, partial rotary, LayerNorm,
            parallel residual, per-projection biases).
        moe: when given and ``moe.is_moe_layer(layer_index)``, the MLP is a sparse
            :class:`~nl2code.models.moe.MoE` of ``moe.n_experts`` MLPs; this needs ``with_aux``.
        layer_index: this block's depth (selects MoE layers and seeds the router noise).
        with_aux: ``forward`` returns ``(x, aux_loss or None)`` instead of ``x``, so a stack can
            sum the MoE balancing losses. Dense callers leave it off and get a tensor back.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        mlp: MLPKind = "gelu",
        dropout: float = 0.0,
        norm_eps: float = 1e-5,
        *,
        bias: bool = False,
        moe: MoEConfig | None = None,
        layer_index: int = 0,
        with_aux: bool = False,
        options: BlockOptions | None = None,
    ):
        super().__init__()
        opt = options or BlockOptions()
        self.attn_norm = make_norm(opt.norm, d_model, norm_eps)
        self.attn = Attention(
            d_model,
            n_heads,
            dropout,
            bias,
            n_kv_heads=opt.n_kv_heads,
            rotary_dim=opt.rotary_dim,
            qkv_bias=opt.qkv_bias,
            out_bias=opt.out_bias,
        )
        self.parallel = opt.parallel_residual
        # A parallel block feeds attention and MLP the same normalised input: one norm only.
        self.mlp_norm = None if self.parallel else make_norm(opt.norm, d_model, norm_eps)
        mlp_bias = bias if opt.mlp_bias is None else opt.mlp_bias
        self.is_moe = moe is not None and moe.is_moe_layer(layer_index)
        if self.is_moe:
            from nl2code.models.moe import MoE

            if not with_aux:
                raise ValueError("an MoE block must be built with with_aux=True (its balancing loss is returned)")
            self.mlp = MoE.from_config(
                moe, d_model, lambda: MLP(d_model, d_ff, mlp, mlp_bias), seed=moe.noise_seed + layer_index
            )
        else:
            self.mlp = MLP(d_model, d_ff, mlp, mlp_bias)
        self.with_aux = with_aux
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = True,
        kv: LayerKV | None = None,
        token_mask: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` (B, T, D) -> (B, T, D), or ``(x, aux)`` with ``with_aux``.

        ``token_mask`` (B, T) marks real tokens; an MoE block routes only those (padding takes no
        expert capacity and stays out of the balancing loss).
        """
        # Dropout is the identity in eval or at p = 0: skip its module calls (decoding is per-call bound).
        drop = self.drop if self.training and self.drop.p > 0 else _identity
        if self.parallel:
            normed = self.attn_norm(x)
            a = drop(self.attn(normed, cos, sin, attn_mask, is_causal, kv))
            h, aux = self._mlp(normed, token_mask)
            x = x + a + drop(h)
            return (x, aux) if self.with_aux else x
        x = x + drop(self.attn(self.attn_norm(x), cos, sin, attn_mask, is_causal, kv))
        h, aux = self._mlp(self.mlp_norm(x), token_mask)
        x = x + drop(h)
        return (x, aux) if self.with_aux else x

    def _mlp(self, x: torch.Tensor, token_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.is_moe:
            return self.mlp(x, mask=token_mask)
        return self.mlp(x), None


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


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


def attention_mask(
    keep: torch.Tensor, start: int = 0, prefix: torch.Tensor | None = None
) -> torch.Tensor:
    """Bool (B, 1, T, S) mask for queries at positions ``start .. S-1`` over keys ``0 .. S-1``.

    Args:
        keep: (B, S) True on real keys (False = padding, never attended to).
        start: position of the first query (the number of cached tokens); T = S - start.
        prefix: optional (B, T) True on query-chunk tokens that form a bidirectional prefix
            (prefix-LM): prefix tokens also see the later prefix tokens of the chunk.

    Each query may always attend to itself, so rows of padded queries are never fully masked;
    SDPA would return NaN for them and poison the batch.
    """
    keep = keep.bool()
    B, S = keep.shape
    device = keep.device
    q_pos = torch.arange(start, S, device=device)
    k_pos = torch.arange(S, device=device)
    mask = (k_pos[None, :] <= q_pos[:, None])[None] & keep[:, None, :]  # (B, T, S)
    if prefix is not None:
        pre = torch.zeros(B, S, dtype=torch.bool, device=device)
        pre[:, start:] = prefix.bool() & keep[:, start:]
        mask |= pre[:, start:, None] & pre[:, None, :]
    mask |= (k_pos[None, :] == q_pos[:, None])[None]
    return mask[:, None]


class KVCache:
    """Keys and values of every layer for incremental decoding, preallocated to ``max_len`` tokens.

    Attributes:
        k, v: (L, B, H, max_len, Hd) buffers; positions ``[0, length)`` are filled.
        keep: (B, max_len) bool, True where the cached token is real (not left padding).
        extras: name -> (B, max_len, ...) state a model keeps per position besides keys and values
            (the copy head's keys and token ids); reordered by :meth:`select` with the rest.
        length: number of cached positions (the same for every row).

    A model's forward appends to the cache layer by layer through :meth:`layer`, then calls
    :meth:`advance`. :meth:`select` reorders or repeats rows (beam search, n samples per prompt).
    """

    def __init__(
        self,
        n_layers: int,
        batch: int,
        n_heads: int,
        head_dim: int,
        max_len: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        shape = (n_layers, batch, n_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.keep = torch.zeros(batch, max_len, dtype=torch.bool, device=device)
        self.length = 0
        self.max_len = max_len
        self.has_padding = False  # some cached token is padding (then every query needs a mask)
        self.extras: dict[str, torch.Tensor] = {}  # (B, max_len, ...) per-position state of a model's head

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def layer(self, index: int) -> LayerKV:
        return LayerKV(self, index)

    def extend_keep(self, keep_new: torch.Tensor, all_real: bool | None = None) -> torch.Tensor:
        """Record the (B, T) keep-mask of the tokens being added; returns (B, length + T).

        ``all_real``: the caller knows ``keep_new`` is all True (saves a device sync).
        """
        end = self.length + keep_new.shape[1]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; {end} requested")
        self.keep[:, self.length : end] = keep_new.bool()
        if not self.has_padding and not (all_real if all_real is not None else bool(keep_new.all())):
            self.has_padding = True
        return self.keep[:, :end]

    def advance(self, n: int) -> None:
        """Mark ``n`` more positions as filled (after every layer has written them)."""
        self.length += n

    def select(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (1-D, may repeat), in that order: the new batch is ``len(index)``."""
        index = index.to(self.k.device)
        self.k = self.k.index_select(1, index)
        self.v = self.v.index_select(1, index)
        self.keep = self.keep.index_select(0, index)
        self.extras = {name: t.index_select(0, index) for name, t in self.extras.items()}


class LayerKV:
    """One layer's view of a :class:`KVCache`: appends new keys/values at the cache's length."""

    def __init__(self, cache: KVCache, index: int):
        self.cache, self.index = cache, index

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k``, ``v`` (B, H, T, Hd); return all keys/values so far (B, H, length + T, Hd)."""
        c, start = self.cache, self.cache.length
        end = start + k.shape[2]
        c.k[self.index, :, :, start:end] = k.to(c.k.dtype)
        c.v[self.index, :, :, start:end] = v.to(c.v.dtype)
        return c.k[self.index, :, :, :end].to(k.dtype), c.v[self.index, :, :, :end].to(v.dtype)
