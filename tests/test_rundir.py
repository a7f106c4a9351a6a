"""RunDir: the run directory's layout, its state checks and its atomic writes."""

from __future__ import annotations

import pytest
import torch

from nl2code.config import ConfigError
from nl2code.rundir import CheckpointError, RunDir


def test_layout_and_state(tmp_path):
    run = RunDir(tmp_path / "run")
    assert not run.holds_run() and len(run.missing()) == 3
    assert run.stage("pre").path == run.path / "stages" / "pre"
    assert run.stage("pre").weights_file.parent == run.stage("pre").path
    run.stage("pre").save_weights(torch.nn.Linear(2, 2))
    assert run.holds_run() and not run.has_weights()  # a stage's weights are not the run's
    run.copy_weights_from(run.stage("pre"))
    assert run.has_weights() and run.weights_file.read_bytes() == run.stage("pre").weights_file.read_bytes()
    run.verify_weights()
    assert sorted(p.name for p in run.path.iterdir() if p.name.startswith(".")) == []  # no temporaries left


def test_damaged_files_are_named(tmp_path):
    run = RunDir(tmp_path)
    run.weights_file.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        run.verify_weights()
    assert run.load_generation_spec() is None
    run.generation_file.write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid JSON"):
        run.load_generation_spec()
