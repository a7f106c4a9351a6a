"""Assertions shared by the training tests (imported as a plain module: tests/ has no packages)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file


def load_weights(path: Path) -> dict:
    return load_file(str(path))


def assert_bit_identical(a: Path, b: Path) -> None:
    wa, wb = load_weights(a), load_weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"tensors differ: {different}"


def train_losses(run_dir: Path, stage: str = "main") -> list[tuple[int, float]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    return [(r["step"], r["loss"]) for r in recs if r["split"] == "train" and r["stage"] == stage]
