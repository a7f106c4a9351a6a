"""Streaming reads and writes of (sharded) safetensors checkpoints, one tensor at a time.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``) and the raw
little-endian tensor bytes. Reading a tensor here is a ``readinto`` straight into its destination
(a parameter, or a row range of a fused one), so a checkpoint loads with no second copy in memory.
Memory-mapping the file would avoid the read too, but every mapped page read stays in the
process's resident set until the whole file is unmapped: copying out of an mmap costs twice the
checkpoint in peak RSS, ``readinto`` costs nothing beyond the destination.

Writing is streamed the same way: the header is computed from shapes first, then each tensor's
bytes are written from its own memory (``safetensors.torch.save_file`` serialises everything into
one bytes object first, a second full copy).
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from nl2code.models.hf_export import WEIGHTS_FILE

SINGLE_FILE = WEIGHTS_FILE  # the Hugging Face folder layout's name (models/hf_export.py spells it)
INDEX_FILE = f"{WEIGHTS_FILE}.index.json"
_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}  # fmt: skip
_NAMES = {v: k for k, v in _DTYPES.items()}
_CHUNK = 1 << 30  # one read(2) moves at most ~2 GiB on Linux; read big tensors in pieces


class CheckpointFormatError(ValueError):
    """A checkpoint folder or file that cannot be read; the message names the file."""


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: file, dtype, shape and absolute byte range."""

    path: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def row_elems(self) -> int:
        """Elements per row, rows being the last dimension (1 for a vector)."""
        return self.shape[-1] if len(self.shape) >= 2 else 1


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """The tensors of one safetensors file and its ``__metadata__``."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointFormatError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", raw)
        if n > min(size - 8, 100 << 20):
            raise CheckpointFormatError(f"{path}: not a safetensors file (header length {n})")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointFormatError(f"{path}: unreadable safetensors header ({e})") from None
    base = 8 + n
    meta = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, h in header.items():
        if h["dtype"] not in _DTYPES:
            raise CheckpointFormatError(f"{path}: tensor {name} has unsupported dtype {h['dtype']}")
        begin, end = h["data_offsets"]
        dtype, shape = _DTYPES[h["dtype"]], tuple(h["shape"])
        if end - begin != math.prod(shape) * dtype.itemsize or base + end > size:
            raise CheckpointFormatError(f"{path}: tensor {name} has inconsistent offsets (truncated file?)")
        tensors[name] = TensorInfo(path, dtype, shape, base + begin, base + end)
    return tensors, meta


class CheckpointFiles:
    """Every tensor of a checkpoint folder: ``model.safetensors`` or the shards an index names.

    Pickled checkpoints (``*.bin``, ``*.pt``) are refused: unpickling runs arbitrary code.
    """

    def __init__(self, folder: str | Path, *, file: str | Path | None = None):
        self.folder = Path(folder)
        index, single = self.folder / INDEX_FILE, self.folder / SINGLE_FILE
        if file is not None:  # one named file (a run's model.safetensors)
            self.folder, files = Path(file).parent, [Path(file).name]
        elif index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError) as e:
                raise CheckpointFormatError(f"{index}: unreadable index ({e})") from None
            files = sorted(set(weight_map.values()))
        elif single.is_file():
            files = [SINGLE_FILE]
        else:
            pickled = sorted(p.name for p in self.folder.glob("*.bin")) + sorted(
                p.name for p in self.folder.glob("*.pt")
            )
            what = f"only pickled weights ({', '.join(pickled[:3])})" if pickled else f"no {SINGLE_FILE}"
            raise CheckpointFormatError(
                f"{self.folder}: {what}; nl2code never unpickles checkpoints (it can run arbitrary code). "
                "Convert it once to safetensors in an environment you trust, e.g. "
                "`AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(OUT, safe_serialization=True)`"
            )
        self.tensors: dict[str, TensorInfo] = {}
        for name in files:
            path = self.folder / name
            if not path.is_file():
                raise CheckpointFormatError(f"{path}: missing (named by {INDEX_FILE})")
            self.tensors.update(read_header(path)[0])
        self._handles: dict[Path, object] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    @property
    def nbytes(self) -> int:
        return sum(t.end - t.start for t in self.tensors.values())

    def dtype(self) -> torch.dtype:
        """The most common floating dtype of the checkpoint (its storage precision)."""
        counts: dict[torch.dtype, int] = {}
        for t in self.tensors.values():
            if t.dtype.is_floating_point:
                counts[t.dtype] = counts.get(t.dtype, 0) + t.end - t.start
        return max(counts, key=counts.get) if counts else torch.float32

    def info(self, name: str) -> TensorInfo:
        if name not in self.tensors:
            raise CheckpointFormatError(f"{self.folder}: tensor {name} is missing")
        return self.tensors[name]

    def read_into(self, name: str, out: torch.Tensor, rows: tuple[int, int] | None = None) -> None:
        """Fill the contiguous ``out`` with tensor ``name`` (or its rows ``[a, b)``), converting dtype."""
        t = self.info(name)
        start, end = t.start, t.end
        if rows is not None:
            row_bytes = t.row_elems * t.dtype.itemsize
            start, end = t.start + rows[0] * row_bytes, t.start + rows[1] * row_bytes
        count = (end - start) // t.dtype.itemsize
        if out.numel() != count or not out.is_contiguous():
            raise CheckpointFormatError(f"{t.path}: {name} has {count} elements here, the model expects {out.numel()}")
        buf = out if out.dtype == t.dtype and out.device.type == "cpu" else torch.empty(count, dtype=t.dtype)
        view = memoryview(buf.detach().reshape(-1).view(torch.uint8).numpy())
        f = self._handle(t.path)
        f.seek(start)
        done = 0
        while done < len(view):
            n = f.readinto(view[done : done + _CHUNK])
            if not n:
                raise CheckpointFormatError(f"{t.path}: ends inside tensor {name} (truncated file?)")
            done += n
        if buf is not out:
            out.copy_(buf.view(out.shape))

    def read(self, name: str, rows: tuple[int, int] | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A new tensor holding ``name`` (or its rows ``[a, b)``, shaped (b - a, row))."""
        t = self.info(name)
        shape = (
            t.shape
            if rows is None
            else ((rows[1] - rows[0], t.row_elems) if len(t.shape) >= 2 else (rows[1] - rows[0],))
        )
        out = torch.empty(shape, dtype=dtype or t.dtype)
        self.read_into(name, out, rows)
        return out

    def _handle(self, path: Path):
        if path not in self._handles:
            self._handles[path] = open(path, "rb", buffering=0)  # noqa: SIM115 (closed in close())
        return self._handles[path]

    def close(self) -> None:
        for f in self._handles.values():
            f.close()
        self._handles.clear()

    def __enter__(self) -> CheckpointFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- writing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """A tensor whose shape and dtype are known before it is computed, so writing the header does
    not compute it (a merged 7B layer is computed once, when its bytes are written)."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    make: Callable[[], torch.Tensor]

    def __call__(self) -> torch.Tensor:
        return self.make()


# A tensor to write: its name and a function producing it (called when its bytes are written, so
# converted copies exist one at a time).
Entry = tuple[str, Callable[[], torch.Tensor]]


def _spec(name: str, make: Callable[[], torch.Tensor]) -> tuple[str, str, tuple[int, ...], int]:
    t = make if isinstance(make, Planned) else make()
    if t.dtype not in _NAMES:
        raise ValueError(f"{name}: dtype {t.dtype} cannot be written to safetensors")
    nbytes = math.prod(t.shape) * torch.empty((), dtype=t.dtype).element_size()
    return name, _NAMES[t.dtype], tuple(t.shape), nbytes


def write_file(path: Path, entries: Iterable[Entry], metadata: dict[str, str] | None = None) -> int:
    """Write ``entries`` to one safetensors file (atomically); returns the data bytes written."""
    entries = list(entries)
    specs, offset, header = [], 0, {}
    for name, make in entries:
        specs.append(_spec(name, make))  # shapes first: the header precedes the data
    for name, dtype, shape, nbytes in specs:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header = {"__metadata__": metadata, **header}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8-byte alignment with spaces
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for (name, make), (_, dtype, shape, nbytes) in zip(entries, specs, strict=True):
            t = make().detach().to("cpu").contiguous()
            if tuple(t.shape) != shape or _NAMES.get(t.dtype) != dtype:
                raise ValueError(f"{name}: produced {t.dtype} {tuple(t.shape)} after {dtype} {shape}")
            if nbytes:
                f.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return offset


def write_checkpoint(
    folder: Path, entries: Iterable[Entry], max_shard_bytes: int | None = None, metadata: dict[str, str] | None = None
) -> list[Path]:
    """``model.safetensors``, or shards ``model-0000i-of-0000n.safetensors`` + index when the
    tensors exceed ``max_shard_bytes``. Returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = list(entries)
    sizes = [_spec(name, make)[3] for name, make in entries]
    shards: list[list[Entry]] = [[]]
    used = 0
    for entry, size in zip(entries, sizes, strict=True):
        if max_shard_bytes and shards[-1] and used + size > max_shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append(entry)
        used += size
    meta = {"format": "pt", **(metadata or {})}
    if len(shards) == 1:
        write_file(folder / SINGLE_FILE, shards[0], meta)
        return [folder / SINGLE_FILE]
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for name, shard in zip(names, shards, strict=True):
        write_file(folder / name, shard, meta)
        weight_map |= {tensor: name for tensor, _ in shard}
    index = {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}
    (folder / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return [folder / n for n in names] + [folder / INDEX_FILE]
