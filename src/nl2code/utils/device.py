"""The one place that picks a device and builds the autocast context (no CUDA literals elsewhere)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Literal

import torch

DeviceName = Literal["auto", "cpu", "cuda", "mps"]
Precision = Literal["auto", "fast", "fp32", "bf16"]


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


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 matrix products natively (oneDNN's AVX-512 / AMX bf16 kernels). Without them
    CPU autocast falls back to slow reference kernels: on a 2-core AVX2 machine the 3.8M-parameter CF recipe
    trained at 59 tokens/s under bf16 and 568 in fp32 (benchmarks/results/cf_mbr_paper_10min.md, cf_mbr20.md);
    an AVX-512 machine ran bf16 at 2.0x fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def resolve_precision(precision: Precision, device: torch.device) -> torch.dtype:
    """Autocast dtype: ``auto`` is bf16 on CUDA devices that support it and fp32 everywhere else; ``fast`` is
    also bf16 on a CPU with native bf16 kernels (:func:`cpu_has_bf16`), fp32 on one without. ``bf16`` on such a
    CPU runs, slowly, with a warning."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise RuntimeError(f"bf16 requested but {torch.cuda.get_device_name(device)} does not support it")
        if device.type == "cpu" and not cpu_has_bf16():
            warnings.warn(
                "precision bf16 on a CPU without native bf16 kernels (no AVX-512/AMX): autocast runs many times "
                "slower than fp32; precision 'fast' picks fp32 here",
                RuntimeWarning,
                stacklevel=2,
            )
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if precision == "fast" and device.type == "cpu" and cpu_has_bf16():
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
