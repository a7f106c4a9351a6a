"""How one of our parameters corresponds to checkpoint tensors, in both directions.

A :class:`Link` says: our parameter ``ours`` is the row-wise concatenation of the checkpoint
tensors ``parts`` (a fused q/k/v projection is three HF tensors, most parameters are one),
optionally passed through ``to_ours`` (e.g. CodeGen's shard-interleaved qkv layout). A part may
be a row range of a bigger tensor (Mixtral experts fused into one 3-D tensor). The same list of
links drives import (read each part straight into its rows of our parameter) and export (split our
parameter back into the parts, through ``to_hf``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from nl2code.hf.safetensors_io import CheckpointFiles


@dataclass(frozen=True)
class Part:
    """A checkpoint tensor, or its rows ``[rows[0], rows[1])`` (rows = last-dim vectors)."""

    name: str
    rows: tuple[int, int] | None = None


@dataclass(frozen=True)
class Link:
    """``ours`` = ``to_ours(cat(parts, dim=0))``; export: ``split(to_hf(ours), sizes)``.

    ``sizes``: rows of each part in our layout (needed to split on export; None = one part).
    """

    ours: str
    parts: tuple[Part, ...]
    sizes: tuple[int, ...] | None = None
    to_ours: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, compare=False)
    to_hf: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, compare=False)


def link(ours: str, *names: str, sizes: tuple[int, ...] | None = None, **fns) -> Link:
    """Shorthand: a link from whole checkpoint tensors ``names``."""
    return Link(ours, tuple(Part(n) for n in names), sizes, **fns)


def fill(params: dict[str, torch.Tensor], links: list[Link], files: CheckpointFiles) -> set[str]:
    """Read every link into ``params`` (our name -> tensor); returns the checkpoint names used."""
    used: set[str] = set()
    with torch.no_grad():
        for ln in links:
            dest = params[ln.ours]
            if ln.to_ours is None:
                flat, offset = dest.view(-1), 0
                for part in ln.parts:
                    n = _part_numel(files, part)
                    files.read_into(part.name, flat[offset : offset + n], part.rows)
                    offset += n
                if offset != dest.numel():
                    raise ValueError(
                        f"{files.folder}: {ln.ours} needs {dest.numel()} values, the checkpoint has {offset}"
                    )
            else:
                pieces = [files.read(p.name, p.rows, dest.dtype) for p in ln.parts]
                merged = ln.to_ours(torch.cat([p.reshape(-1, *p.shape[1:]) for p in pieces]))
                if merged.shape != dest.shape:
                    raise ValueError(
                        f"{files.folder}: {ln.ours} has shape {tuple(merged.shape)}, expected {tuple(dest.shape)}"
                    )
                dest.copy_(merged)
            used.update(p.name for p in ln.parts)
    return used


def split(ln: Link, tensor: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Our ``tensor`` of link ``ln`` as (checkpoint name, tensor) pairs (whole-tensor parts only)."""
    if any(p.rows is not None for p in ln.parts):
        raise ValueError(f"{ln.ours}: links to row ranges are import-only")
    t = ln.to_hf(tensor) if ln.to_hf is not None else tensor
    if len(ln.parts) == 1:
        return [(ln.parts[0].name, t)]
    return [(p.name, piece) for p, piece in zip(ln.parts, t.split(list(ln.sizes), dim=0), strict=True)]


def _part_numel(files: CheckpointFiles, part: Part) -> int:
    info = files.info(part.name)
    if part.rows is None:
        return (info.end - info.start) // info.dtype.itemsize
    return (part.rows[1] - part.rows[0]) * info.row_elems
