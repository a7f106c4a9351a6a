"""Atomic, verified checkpoints.

Layout of one checkpoint, ``ROOT/step_00000100/``:

- the run directory's weights file (``nl2code.rundir.WEIGHTS_FILE``): the live weights (tied tensors stored once);
- ``ema.safetensors``: the EMA weights, when the run keeps an EMA;
- ``state.pt``: optimizer, step, data position and RNG states (plain tensors and Python values
  only, loaded with ``torch.load(weights_only=True)``);
- the run directory's config file (``nl2code.rundir.CONFIG_FILE``): the resolved run config;
- ``MANIFEST.json``: written last; the size and SHA-256 of every other file.

A checkpoint is written into a hidden temporary directory and renamed into place only when
complete, so a process killed at any moment leaves either the old set or the new one, never a
half-written ``step_*``. Loading re-checks every size and hash; a damaged checkpoint raises
:class:`CheckpointError` naming the bad file, and :func:`latest_valid_checkpoint` skips it.
A run's final weights have no manifest; :func:`nl2code.rundir.verify_weights` checks that they are a
complete safetensors file (a truncated or overwritten one fails) before they are loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from nl2code import config as config_io
from nl2code.rundir import CONFIG_FILE, CheckpointError, save_weights, verify_weights
from nl2code.rundir import WEIGHTS_FILE as MODEL_FILE
from nl2code.utils.io import fsync as _fsync

MANIFEST = "MANIFEST.json"
EMA_FILE = "ema.safetensors"
STATE_FILE = "state.pt"
_NAME = re.compile(r"^step_(\d{8})$")


def checkpoint_path(root: Path, step: int) -> Path:
    return Path(root) / f"step_{step:08d}"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Finished-looking checkpoint directories under ``root``, oldest first (not yet verified)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _NAME.match(p.name))]
    return sorted(found)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(
    root: Path,
    step: int,
    *,
    model: nn.Module,
    state: dict[str, Any],
    config: Any | None = None,
    ema: dict[str, torch.Tensor] | None = None,
    keep_last: int = 3,
) -> Path:
    """Write checkpoint ``step`` under ``root``, then delete all but the newest ``keep_last``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(root, step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_model(model, str(tmp / MODEL_FILE), metadata={"format": "pt"})
    if ema is not None:
        save_file({k: v.contiguous() for k, v in ema.items()}, str(tmp / EMA_FILE), metadata={"format": "pt"})
    torch.save(state, tmp / STATE_FILE)
    if config is not None:
        config_io.save(config, tmp / CONFIG_FILE)
    files = {}
    for f in sorted(tmp.iterdir()):
        _fsync(f)
        files[f.name] = {"bytes": f.stat().st_size, "sha256": _sha256(f)}
    manifest = tmp / MANIFEST
    manifest.write_text(json.dumps({"step": step, "files": files}, indent=1) + "\n", encoding="utf-8")
    _fsync(manifest)
    _fsync(tmp)
    if final.exists():
        # Only reached when an earlier save of this step was found unusable and the run went
        # back to an older checkpoint; move the bad one aside so the rename below can succeed.
        trash = root / f".trash-{final.name}-{os.getpid()}"
        os.rename(final, trash)
        os.rename(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, final)
    _fsync(root)
    for _, old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Delete half-written ``.tmp-*``/``.trash-*`` directories left by a killed run; returns them."""
    root = Path(root)
    stale = [*root.glob(".tmp-step_*"), *root.glob(".trash-step_*")]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def verify_checkpoint(path: Path) -> int:
    """Check every file of checkpoint ``path`` against its manifest; returns the step."""
    path = Path(path)
    manifest = path / MANIFEST
    if not manifest.is_file():
        raise CheckpointError(f"{manifest}: missing; the checkpoint is incomplete")
    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
        step, files = int(info["step"]), dict(info["files"])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{manifest}: unreadable manifest ({e})") from e
    for required in (MODEL_FILE, STATE_FILE):
        if required not in files:
            raise CheckpointError(f"{manifest}: does not list {required}")
    for name, meta in files.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{f}: missing")
        size = f.stat().st_size
        if size != meta["bytes"]:
            raise CheckpointError(f"{f}: {size} bytes but the manifest records {meta['bytes']} (truncated?)")
        if _sha256(f) != meta["sha256"]:
            raise CheckpointError(f"{f}: SHA-256 does not match the manifest (corrupted)")
    return step


def load_checkpoint(
    path: Path, model: nn.Module, device: torch.device
) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Verify checkpoint ``path``, load its weights into ``model``; return (state, ema weights or None).

    ``state`` stays on the CPU: RNG states must, and ``Optimizer.load_state_dict`` moves its
    tensors to the parameters' device itself.
    """
    path = Path(path)
    verify_checkpoint(path)
    weights = path / MODEL_FILE
    try:
        missing, unexpected = load_model(model, str(weights), strict=False, device=str(device))
    except (SafetensorError, RuntimeError, OSError) as e:
        raise CheckpointError(f"{weights}: cannot load into the model: {e}") from e
    if missing or unexpected:
        raise CheckpointError(
            f"{weights}: does not match the model (missing {sorted(missing)[:3]}, unexpected "
            f"{sorted(unexpected)[:3]}); was the model config changed?"
        )
    ema = None
    if (path / EMA_FILE).is_file():
        try:
            ema = load_file(str(path / EMA_FILE), device=str(device))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{path / EMA_FILE}: {e}") from e
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors have many types; all mean "this file is bad"
        raise CheckpointError(f"{path / STATE_FILE}: cannot load: {e}") from e
    return state, ema


def latest_valid_checkpoint(root: Path, warn: Callable[[str], None]) -> Path | None:
    """The newest checkpoint under ``root`` that passes verification, warning about each one skipped."""
    skipped = []
    for _, path in reversed(list_checkpoints(root)):
        try:
            verify_checkpoint(path)
        except CheckpointError as e:
            warn(f"warning: skipping unusable checkpoint: {e}")
            skipped.append(path)
            continue
        if skipped:
            warn(f"warning: falling back to {path}, the newest good checkpoint")
        return path
    return None


__all__ = [
    "CheckpointError",
    "latest_valid_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "remove_stale_temporaries",
    "save_checkpoint",
    "save_weights",
    "verify_checkpoint",
    "verify_weights",
]
