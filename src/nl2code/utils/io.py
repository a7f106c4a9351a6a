"""Atomic file writes and JSON Lines, shared by every writer of runs, results and reports.

A file written here is complete or absent: the bytes go to a hidden temporary file beside it, which
is renamed over the target only once written, so a process killed at any moment leaves the old
file (or none), never half of a new one.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def fsync(path: str | Path) -> None:
    """Flush ``path`` (a file or a directory) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error it replaces ``path``.

    For writers that want a file name (safetensors, ``torch.save``, ``shutil.copyfile``). The
    temporary name carries the process id, so concurrent writers never share one; on error it is
    removed. ``durable`` fsyncs the file before the rename.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if durable:
            fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: str | bytes, *, mkdir: bool = True) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; returns ``path``."""
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return path


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    """``obj`` as JSON (non-ASCII kept, unknown types as ``str``) plus a newline, atomically."""
    return atomic_write(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n")


def jsonl_text(rows: Iterable[Any]) -> str:
    """One compact JSON object a line (non-ASCII kept)."""
    return "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    """``rows`` as JSON Lines, atomically."""
    return atomic_write(path, jsonl_text(rows))


def read_jsonl(path: str | Path) -> list[Any]:
    """Every non-blank line of ``path`` parsed as JSON."""
    text = Path(path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


__all__ = ["atomic_path", "atomic_write", "fsync", "jsonl_text", "read_jsonl", "write_json", "write_jsonl"]
