"""4-bit NormalFloat (NF4) weights for QLoRA-style training of adapters on a frozen base, on any device.

Blockwise absmax quantisation (Dettmers et al. 2023, QLoRA): each block of ``block_size`` (64)
consecutive weights is scaled by its absolute maximum into [-1, 1] and every value is replaced by
the index of the nearest of the 16 NF4 levels, two 4-bit codes per uint8. Dequantisation is
``level[code] * absmax``; :class:`NF4Linear` does it on the fly in ``forward``, so the base weight
is never stored in full precision and gets no gradient (LoRA adapters on top do; see lora.py).

Optional double quantisation (QLoRA's "DQ") stores the per-block absmax constants themselves as
int8: the mean is subtracted and each group of ``dq_block_size`` (256) centred constants is
scaled symmetrically by its absmax. bitsandbytes uses its dynamic 8-bit float map here instead
of linear int8; the memory saving is the same (0.5 -> ~0.127 bits per weight) and the error
bound per weight grows by the absmax error ``|absmax - deq(absmax)|`` (levels lie in [-1, 1]).

Pure PyTorch, CPU-friendly (no bitsandbytes): it saves memory, not time. On GPU a fused kernel
would be faster; this is for small models and for tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# The 16 NF4 levels as published in QLoRA / bitsandbytes: normal quantiles with offset
# (1 - 1/30 + 1 - 1/32) / 2, 8 positive and 7 negative plus an exact zero, scaled to [-1, 1].
# tests/models/test_quant.py recomputes them from torch.special.ndtri.
NF4_LEVELS = (
    -1.0, -0.6961928, -0.5250731, -0.3949175, -0.2844414, -0.1847734, -0.0910500, 0.0,
    0.0795803, 0.1609302, 0.2461123, 0.3379152, 0.4407098, 0.5626170, 0.7229568, 1.0,
)  # fmt: skip


def nf4_levels(device: torch.device | str | None = None) -> torch.Tensor:
    """(16,) float32 NF4 levels, ascending."""
    return torch.tensor(NF4_LEVELS, dtype=torch.float32, device=device)


@dataclass
class NF4Tensor:
    """A quantised tensor.

    Attributes:
        codes: (ceil(numel / block_size) * block_size / 2,) uint8, two codes per byte (high nibble first).
        absmax: (n_blocks,) float32 block scales, or None when double-quantised.
        shape, dtype: of the original tensor (``dtype`` is what :func:`dequantize_nf4` returns).
        block_size: weights per absmax block.
        absmax_q: (n_blocks,) int8 quantised centred scales (double quantisation), else None.
        absmax_scale: (ceil(n_blocks / dq_block_size),) float32 scale per group of absmax_q.
        absmax_offset: () float32 mean subtracted from the scales before quantising them.
        dq_block_size: absmax constants per ``absmax_scale`` entry.
    """

    codes: torch.Tensor
    absmax: torch.Tensor | None
    shape: torch.Size
    dtype: torch.dtype
    block_size: int
    absmax_q: torch.Tensor | None = None
    absmax_scale: torch.Tensor | None = None
    absmax_offset: torch.Tensor | None = None
    dq_block_size: int = 256

    def block_absmax(self) -> torch.Tensor:
        """(n_blocks,) float32 scales, dequantising them first when double-quantised."""
        if self.absmax is not None:
            return self.absmax
        assert self.absmax_q is not None and self.absmax_scale is not None and self.absmax_offset is not None
        n = self.absmax_q.numel()
        scale = self.absmax_scale.repeat_interleave(self.dq_block_size)[:n]  # last group may be short
        return self.absmax_q.float() * scale + self.absmax_offset


_CHUNK = 1 << 20  # weights quantised per slice: bounds the float32/int64 temporaries of a big tensor


def _blocks(w: torch.Tensor, block_size: int) -> torch.Tensor:
    """Flatten and zero-pad ``w`` to (n_blocks, block_size) float32."""
    flat = w.detach().reshape(-1).float()
    pad = (-flat.numel()) % block_size
    return F.pad(flat, (0, pad)).view(-1, block_size)


def quantize_nf4(
    w: torch.Tensor, block_size: int = 64, double_quant: bool = False, dq_block_size: int = 256
) -> NF4Tensor:
    """Quantise ``w`` (any shape, floating) to NF4 with blockwise absmax scaling.

    Args:
        w: the tensor; its trailing partial block is zero-padded.
        block_size: weights per absmax block (even, so codes pack into whole bytes).
        double_quant: also quantise the absmax constants to int8 (groups of ``dq_block_size``).
    """
    if block_size < 2 or block_size % 2:
        raise ValueError(f"block_size must be an even number >= 2, got {block_size}")
    if not w.is_floating_point():
        raise TypeError(f"can only quantise floating tensors, got {w.dtype}")
    flat = w.detach().reshape(-1)
    n_blocks = -(-flat.numel() // block_size)
    packed = torch.empty(n_blocks * block_size // 2, dtype=torch.uint8, device=w.device)
    absmax = torch.empty(n_blocks, dtype=torch.float32, device=w.device)
    levels = nf4_levels(w.device)
    mids = (levels[1:] + levels[:-1]) / 2
    step = max(1, _CHUNK // block_size)  # blocks are independent: quantise a bounded slice at a time
    for b in range(0, n_blocks, step):
        blocks = _blocks(flat[b * block_size : (b + step) * block_size], block_size)  # (n, block_size)
        amax = blocks.abs().amax(dim=1)
        scaled = blocks / torch.where(amax > 0, amax, 1.0)[:, None]  # in [-1, 1]; all-zero blocks stay 0
        codes = torch.bucketize(scaled, mids).to(torch.uint8).view(-1)  # nearest level = midpoints below
        absmax[b : b + len(amax)] = amax
        packed[b * block_size // 2 : (b + len(amax)) * block_size // 2] = (codes[0::2] << 4) | codes[1::2]
    q = NF4Tensor(packed, absmax, w.shape, w.dtype, block_size)
    if double_quant:
        offset = absmax.mean()
        groups = _blocks(absmax - offset, dq_block_size)  # (n_groups, dq_block_size)
        scale = groups.abs().amax(dim=1) / 127
        qa = torch.round(groups / torch.where(scale > 0, scale, 1.0)[:, None]).to(torch.int8)
        q.absmax, q.absmax_q = None, qa.view(-1)[: absmax.numel()].clone()
        q.absmax_scale, q.absmax_offset, q.dq_block_size = scale, offset, dq_block_size
    return q


def _absmax_range(q: NF4Tensor, b0: int, b1: int) -> torch.Tensor:
    """float32 scales of blocks ``b0:b1`` (the same values as ``q.block_absmax()[b0:b1]``)."""
    if q.absmax is not None:
        return q.absmax[b0:b1]
    assert q.absmax_q is not None and q.absmax_scale is not None and q.absmax_offset is not None
    group = torch.arange(b0, b1, device=q.absmax_q.device) // q.dq_block_size
    return q.absmax_q[b0:b1].float() * q.absmax_scale[group] + q.absmax_offset


def dequantize_range(q: NF4Tensor, start: int, stop: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Elements ``start:stop`` of the flattened tensor, 1-D, in ``dtype`` (default: the original).

    Works a bounded slice of blocks at a time: the int64 code indices and float32 products of a
    whole big matrix (an LM head) would cost ~3x its fp32 size in temporaries.
    """
    bs, levels = q.block_size, nf4_levels(q.codes.device)
    out = torch.empty(stop - start, dtype=dtype or q.dtype, device=q.codes.device)
    step = max(1, _CHUNK // bs)
    first, end = start // bs, -(-stop // bs)
    for b in range(first, end, step):
        e = min(b + step, end)
        packed = q.codes[b * bs // 2 : e * bs // 2]
        codes = torch.stack((packed >> 4, packed & 0x0F), dim=-1).view(-1).long()
        values = (levels[codes].view(-1, bs) * _absmax_range(q, b, e)[:, None]).view(-1)
        lo, hi = max(start, b * bs), min(stop, e * bs)
        out[lo - start : hi - start] = values[lo - b * bs : hi - b * bs]
    return out


def dequantize_nf4(q: NF4Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Rebuild the tensor: ``level[code] * absmax`` per block, in ``dtype`` (default: the original)."""
    return dequantize_range(q, 0, q.shape.numel(), dtype).view(q.shape)


def nf4_error_bound(q: NF4Tensor) -> torch.Tensor:
    """(shape of w) ``absmax_block * max_level_gap / 2``: the bound on ``|w - dequantize_nf4(q)|``
    without double quantisation (with it, add ``|absmax - q.block_absmax()|`` of the block)."""
    levels = nf4_levels(q.codes.device)
    half_gap = (levels[1:] - levels[:-1]).max() / 2
    per_block = (q.block_absmax() * half_gap)[:, None].expand(-1, q.block_size)
    return per_block.reshape(-1)[: q.shape.numel()].view(q.shape)


_MATMUL_CHUNK = 1 << 22  # weights dequantised at once by a big layer's forward/backward (16 MiB in fp32)


def row_slices(out_features: int, in_features: int) -> list[tuple[int, int]]:
    """Row ranges of an (out, in) weight holding at most ``_MATMUL_CHUNK`` weights each (at least one row)."""
    rows = max(1, _MATMUL_CHUNK // in_features)
    return [(r, min(r + rows, out_features)) for r in range(0, out_features, rows)]


class _NF4Matmul(torch.autograd.Function):
    """``x @ W.T + b`` (``b`` frozen) that dequantises ``W`` again in backward instead of saving it: autograd would
    otherwise keep every layer's full-precision weight alive until backward (the whole model). A layer bigger
    than ``_MATMUL_CHUNK`` weights (an LM head, a 7B MLP) is dequantised and multiplied a slice of rows at a time,
    so its full-precision weight never exists either."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: NF4Linear) -> torch.Tensor:  # noqa: ANN001
        ctx.layer, ctx.x_dtype = layer, x.dtype
        bias = None if layer.bias is None else layer.bias.to(x.dtype)
        slices = row_slices(layer.out_features, layer.in_features)
        if len(slices) == 1:
            return F.linear(x, layer.dequantized_weight(x.dtype), bias)
        out = x.new_empty(*x.shape[:-1], layer.out_features)
        for r0, r1 in slices:
            b = None if bias is None else bias[r0:r1]
            out[..., r0:r1] = F.linear(x, layer.dequantized_rows(r0, r1, x.dtype), b)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:  # noqa: ANN001
        if not ctx.needs_input_grad[0]:
            return None, None
        layer = ctx.layer
        slices = row_slices(layer.out_features, layer.in_features)
        if len(slices) == 1:
            return (grad @ layer.dequantized_weight(grad.dtype)).to(ctx.x_dtype), None
        dx = grad.new_zeros(*grad.shape[:-1], layer.in_features)
        for r0, r1 in slices:
            dx += grad[..., r0:r1] @ layer.dequantized_rows(r0, r1, grad.dtype)
        return dx.to(ctx.x_dtype), None


class NF4Linear(nn.Module):
    """A frozen ``nn.Linear`` whose weight is held as NF4 and dequantised in each ``forward``.

    The quantised state lives in buffers (so it moves with ``.to(device)`` and is saved in the
    state dict) and the module has no parameters: nothing here can be trained.
    """

    def __init__(self, q: NF4Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        if len(q.shape) != 2:
            raise ValueError(f"NF4Linear needs a 2-D weight, got shape {tuple(q.shape)}")
        self.out_features, self.in_features = q.shape
        self.block_size, self.dq_block_size = q.block_size, q.dq_block_size
        self.weight_dtype = q.dtype
        self.register_buffer("codes", q.codes)
        self.register_buffer("absmax", q.absmax)
        self.register_buffer("absmax_q", q.absmax_q)
        self.register_buffer("absmax_scale", q.absmax_scale)
        self.register_buffer("absmax_offset", q.absmax_offset)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, block_size: int = 64, double_quant: bool = False) -> NF4Linear:
        """Quantise ``linear``'s weight (the bias is kept in full precision, as in QLoRA)."""
        return cls(quantize_nf4(linear.weight, block_size, double_quant), linear.bias)

    def quantized(self) -> NF4Tensor:
        """The stored weight as an :class:`NF4Tensor` (views of the buffers)."""
        return NF4Tensor(
            self.codes,
            self.absmax,
            torch.Size((self.out_features, self.in_features)),
            self.weight_dtype,
            self.block_size,
            self.absmax_q,
            self.absmax_scale,
            self.absmax_offset,
            self.dq_block_size,
        )

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """(out_features, in_features) weight in ``dtype`` (default: the original dtype)."""
        return dequantize_nf4(self.quantized(), dtype)

    def dequantized_rows(self, r0: int, r1: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Rows ``r0:r1`` of :meth:`dequantized_weight` (equal values), without the other rows."""
        flat = dequantize_range(self.quantized(), r0 * self.in_features, r1 * self.in_features, dtype)
        return flat.view(r1 - r0, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _NF4Matmul.apply(x, self)

    def extra_repr(self) -> str:
        dq = ", double_quant" if self.absmax is None else ""
        return f"in={self.in_features}, out={self.out_features}, nf4 block={self.block_size}{dq}"


def matches(name: str, patterns: Sequence[str]) -> bool:
    """Whether dotted module ``name`` matches a regex in ``patterns``: the whole name or a dotted
    suffix of it, so ``"qkv"`` matches ``blocks.0.attn.qkv`` and ``"mlp\\.(up|down)"`` matches
    ``blocks.3.mlp.up``."""
    return any(re.fullmatch(rf"(?:.*\.)?(?:{p})", name) for p in patterns)


def replace_module(root: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at dotted path ``name`` inside ``root``."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def tied_parameters(model: nn.Module) -> set[int]:
    """ids of parameters registered under more than one name (e.g. an LM head tied to the embedding)."""
    seen: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        seen[id(p)] = seen.get(id(p), 0) + 1
    return {pid for pid, count in seen.items() if count > 1}


def quantizable(model: nn.Module, targets: Sequence[str] | None = None, exclude: Sequence[str] = ()) -> list[str]:
    """Names of the ``nn.Linear`` layers :func:`quantize_linears` replaces (works on the meta device).

    Linears whose weight is tied to another parameter (e.g. ``lm_head`` tied to the embedding)
    are skipped: quantising one would untie them.
    """
    tied = tied_parameters(model)
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear)
        and (targets is None or matches(name, targets))
        and not matches(name, exclude)
        and id(m.weight) not in tied
    ]


# (module name) -> (weight, bias or None) of that Linear, e.g. read from a checkpoint file
LinearReader = Callable[[str], tuple[torch.Tensor, torch.Tensor | None]]


def quantize_linears(
    model: nn.Module,
    targets: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    block_size: int = 64,
    double_quant: bool = False,
    read: LinearReader | None = None,
) -> list[str]:
    """Replace ``nn.Linear`` layers of ``model`` in place by frozen :class:`NF4Linear`.

    Args:
        targets: module-name regexes (see :func:`matches`); None = every Linear.
        exclude: regexes of modules to leave in full precision.
        block_size, double_quant: see :func:`quantize_nf4`.
        read: where each layer's weight and bias come from (default: the module's own). With it
            ``model`` may live on the meta device: one layer's full-precision weight exists at a time.
    Returns: the names replaced (see :func:`quantizable`).
    """
    names = quantizable(model, targets, exclude)
    for name in names:
        if read is None:
            linear = model.get_submodule(name)
            weight, bias = linear.weight, linear.bias
        else:
            weight, bias = read(name)
        replace_module(model, name, NF4Linear(quantize_nf4(weight, block_size, double_quant), bias))
        del weight, bias
    return names


__all__ = [
    "NF4Linear",
    "NF4Tensor",
    "NF4_LEVELS",
    "dequantize_nf4",
    "dequantize_range",
    "matches",
    "nf4_error_bound",
    "nf4_levels",
    "LinearReader",
    "quantizable",
    "quantize_linears",
    "quantize_nf4",
    "replace_module",
    "row_slices",
    "tied_parameters",
]
