"""Checkpoint files: atomic writes, verification that names the bad file, fallback, pruning."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch

from nl2code.models import CodeGenConfig, build_model
from nl2code.train.checkpoint import (
    CheckpointError,
    checkpoint_path,
    latest_valid_checkpoint,
    list_checkpoints,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    save_weights,
    verify_checkpoint,
    verify_weights,
)

CPU = torch.device("cpu")


def tiny(seed: int = 0, d: int = 16):
    cfg = CodeGenConfig(vocab_size=30, d_model=d, n_layers=1, n_heads=2, max_seq_len=16)
    return build_model(cfg, generator=torch.Generator().manual_seed(seed))


def save(root, step, model=None, **kw):
    state = {"step": step, "rng": [{"global": {"torch": torch.get_rng_state()}}], "data": {"epoch": 0, "index": step}}
    return save_checkpoint(root, step, model=model or tiny(step), state=state, **kw)


def test_round_trip_restores_weights_state_and_ema(tmp_path):
    src = tiny(1)
    ema = {k: v.detach().clone() + 1 for k, v in src.named_parameters()}
    path = save(tmp_path, 5, src, ema=ema)
    assert path == checkpoint_path(tmp_path, 5) and verify_checkpoint(path) == 5
    dst = tiny(2)
    state, ema_loaded = load_checkpoint(path, dst, CPU)
    for (name, a), b in zip(src.state_dict().items(), dst.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert dst.lm_head.weight.data_ptr() == dst.embed.weight.data_ptr()  # tying survives loading
    assert state["data"] == {"epoch": 0, "index": 5}
    assert all(torch.equal(ema[k], ema_loaded[k]) for k in ema)


def test_manifest_lists_sizes_and_hashes(tmp_path):
    path = save(tmp_path, 1)
    files = json.loads((path / "MANIFEST.json").read_text())["files"]
    assert set(files) == {"model.safetensors", "state.pt"}
    assert files["state.pt"]["bytes"] == (path / "state.pt").stat().st_size


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda p: (p / "model.safetensors").write_bytes((p / "model.safetensors").read_bytes()[:100]),
            r"model\.safetensors: 100 bytes but the manifest records \d+ \(truncated\?\)",
        ),
        (
            lambda p: (p / "state.pt").write_bytes(b"\0" + (p / "state.pt").read_bytes()[1:]),
            r"state\.pt: SHA-256 does not match",
        ),
        (lambda p: (p / "MANIFEST.json").unlink(), r"MANIFEST\.json: missing; the checkpoint is incomplete"),
        (lambda p: (p / "MANIFEST.json").write_text("{"), r"MANIFEST\.json: unreadable manifest"),
        (lambda p: (p / "state.pt").unlink(), r"state\.pt: missing"),
    ],
    ids=["truncated", "corrupted", "no-manifest", "bad-manifest", "missing-file"],
)
def test_damage_is_reported_with_the_file_name(tmp_path, damage, message):
    path = save(tmp_path, 3)
    damage(path)
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + "/" + message):
        verify_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path, tiny(), CPU)


def test_latest_valid_falls_back_and_says_so(tmp_path):
    save(tmp_path, 10)
    save(tmp_path, 20)
    bad = checkpoint_path(tmp_path, 20) / "model.safetensors"
    bad.write_bytes(bad.read_bytes()[:-1])
    said: list[str] = []
    assert latest_valid_checkpoint(tmp_path, said.append) == checkpoint_path(tmp_path, 10)
    assert str(bad) in said[0] and "falling back to" in said[1] and "step_00000010" in said[1]
    (checkpoint_path(tmp_path, 10) / "MANIFEST.json").unlink()
    assert latest_valid_checkpoint(tmp_path, said.append) is None
    assert latest_valid_checkpoint(tmp_path / "absent", said.append) is None


def test_a_failed_save_leaves_the_last_good_checkpoint_untouched(tmp_path):
    good = save(tmp_path, 10)
    before = {f.name: f.read_bytes() for f in good.iterdir()}
    with pytest.raises(Exception):  # noqa: B017 (any failure mid-write will do)
        save_checkpoint(tmp_path, 20, model=tiny(), state={"not saveable": lambda: None})
    assert [s for s, _ in list_checkpoints(tmp_path)] == [10]
    assert {f.name: f.read_bytes() for f in good.iterdir()} == before
    stale = remove_stale_temporaries(tmp_path)
    assert [p.name for p in stale] == [f".tmp-step_00000020-{os.getpid()}"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_saving_a_step_again_replaces_a_bad_copy(tmp_path):
    path = save(tmp_path, 7)
    (path / "state.pt").write_bytes(b"garbage")
    save(tmp_path, 7)
    assert verify_checkpoint(path) == 7


def test_keep_last_prunes_oldest(tmp_path):
    for step in (1, 2, 3, 4):
        save(tmp_path, step, keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 4]


def test_loading_into_a_different_architecture_is_a_clear_error(tmp_path):
    path = save(tmp_path, 1, tiny(d=16))
    with pytest.raises(CheckpointError, match="model.safetensors: cannot load into the model|does not match"):
        load_checkpoint(path, tiny(d=32), CPU)


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[: len(b) // 2], lambda b: b[:5], lambda b: b + b"\0" * 16, lambda b: b""],
    ids=["half", "5-bytes", "appended", "empty"],
)
def test_final_weights_are_verified_naming_the_file(tmp_path, damage):
    path = tmp_path / "model.safetensors"
    save_weights(tiny(), path)
    verify_weights(path)  # intact: no error
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ": truncated or corrupt"):
        verify_weights(path)
    with pytest.raises(CheckpointError, match="missing"):
        verify_weights(tmp_path / "nope.safetensors")
