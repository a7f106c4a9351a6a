"""The one place that picks a device and builds the autocast context (no CUDA literals elsewhere)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

DeviceName = Literal["auto", "cpu", "cuda", "mps"]
Precision = Literal["auto", "fp32", "bf16"]


def resolve_device(name: DeviceName, local_rank: int = 0) -> torch.device:
    """``auto`` -> the local CUDA device when available, else CPU. Asking for a missing device fails."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise RuntimeError("device 'mps' requested but MPS is not available")
        return torch.device("mps")
    return torch.device("cpu")


def resolve_precision(precision: Precision, device: torch.device) -> torch.dtype:
    """Autocast dtype: ``auto`` is bf16 on CUDA devices that support it and fp32 everywhere else."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise RuntimeError(f"bf16 requested but {torch.cuda.get_device_name(device)} does not support it")
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Mixed-precision context for ``dtype`` on ``device``; a no-op for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_threads(n: int | None) -> int:
    """Set PyTorch's intra-op CPU threads to ``n`` (None or 0: leave as is); returns the previous count."""
    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    return previous


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` intra-op CPU threads (None or 0: unchanged), then restore the count."""
    previous = set_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
