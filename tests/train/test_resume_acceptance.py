"""Acceptance tests of `nl2code train` as a process: SIGKILL/Ctrl-C then --resume, damaged
checkpoints, and 2-process gloo DDP against 1 process. All compare with one reference run."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from runhelpers import assert_bit_identical, load_weights, train_losses

from nl2code.train.checkpoint import CheckpointError, list_checkpoints, verify_checkpoint


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"run exited ({proc.returncode}) before {path} appeared"
        assert time.monotonic() < deadline, f"timed out waiting for {path}"
        time.sleep(0.002)


def test_sigkill_mid_run_then_resume_gives_bit_identical_weights(
    tmp_path, reference_run, popen_train, run_train, fast_overrides
):
    run_dir = tmp_path / "run"
    proc = popen_train(run_dir, *fast_overrides)
    _wait_for(run_dir / "checkpoints" / "step_00000010", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "model.safetensors").exists(), "the run finished before it was killed"

    res = run_train(run_dir, *fast_overrides, "--resume")
    assert re.search(r"resumed stage 'main' from .*step_000000[12]0", res.stderr)
    assert_bit_identical(reference_run / "model.safetensors", run_dir / "model.safetensors")
    # The killed run's records past the checkpoint were replaced: the log reads like one run.
    assert train_losses(run_dir) == train_losses(reference_run)


def test_truncated_checkpoint_is_named_and_resume_falls_back(tmp_path, reference_run, run_train, fast_overrides):
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    (run_dir / "model.safetensors").unlink()  # as if killed right after the last checkpoint
    newest = run_dir / "checkpoints" / "step_00000030"
    bad = newest / "model.safetensors"
    bad.write_bytes(bad.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=re.escape(str(bad)) + ".*truncated"):
        verify_checkpoint(newest)

    res = run_train(run_dir, *fast_overrides, "--resume")
    assert str(bad) in res.stderr
    assert "falling back to" in res.stderr and "step_00000020" in res.stderr
    assert_bit_identical(reference_run / "model.safetensors", run_dir / "model.safetensors")
    assert verify_checkpoint(newest) == 30  # the bad checkpoint was replaced by a good one


def test_ctrl_c_saves_a_checkpoint_exits_cleanly_and_resumes_exactly(
    tmp_path, reference_run, popen_train, run_train, fast_overrides
):
    run_dir = tmp_path / "run"
    proc = popen_train(run_dir, *fast_overrides)
    _wait_for(run_dir / "checkpoints" / "step_00000010", proc)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    log = Path(f"{run_dir}.log").read_text()
    assert proc.returncode == 130, log
    assert "Traceback" not in log
    assert "Continue with --resume" in log
    step, newest = list_checkpoints(run_dir / "checkpoints")[-1]
    assert 10 <= step < 30 and verify_checkpoint(newest) == step
    assert not (run_dir / "model.safetensors").exists()

    run_train(run_dir, *fast_overrides, "--resume")
    assert_bit_identical(reference_run / "model.safetensors", run_dir / "model.safetensors")


def test_two_process_gloo_ddp_matches_one_process(tmp_path, reference_run, run_train, fast_overrides):
    run_dir = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    res = run_train(run_dir, *fast_overrides, launcher=launcher)
    assert "2 process(es)" in res.stderr

    one, two = train_losses(reference_run), train_losses(run_dir)
    assert [s for s, _ in one] == [s for s, _ in two] == list(range(1, 31))
    np.testing.assert_allclose([x for _, x in two], [x for _, x in one], rtol=1e-5)

    def evals(d: Path) -> list[float]:
        recs = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in recs if r["split"] == "eval"]

    assert len(evals(run_dir)) == 3
    np.testing.assert_allclose(evals(run_dir), evals(reference_run), rtol=1e-5)
    w1, w2 = load_weights(reference_run / "model.safetensors"), load_weights(run_dir / "model.safetensors")
    for k in w1:
        np.testing.assert_allclose(w2[k].numpy(), w1[k].numpy(), atol=1e-5, err_msg=k)
    # Rank 0 alone wrote logs: one record per step, not one per rank.
    assert len(two) == 30


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(3))
def test_sigkill_while_a_checkpoint_is_being_written(tmp_path, reference_run, popen_train, run_train, fast_overrides,
                                                     trial):
    """With a checkpoint every step, kill the run while one is half-written (or being pruned)."""
    run_dir = tmp_path / "run"
    args = [*fast_overrides, "train.ckpt_every=1"]
    proc = popen_train(run_dir, *args)
    ckpts = run_dir / "checkpoints"
    _wait_for(ckpts / f"step_{5 + 5 * trial:08d}", proc)
    deadline = time.monotonic() + 60
    while not list(ckpts.glob(".tmp-step_*")):
        assert proc.poll() is None, "the run finished before a checkpoint write could be interrupted"
        assert time.monotonic() < deadline
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    res = run_train(run_dir, *args, "--resume")
    assert "removed unfinished checkpoint" in res.stderr or not list(ckpts.glob(".tmp-step_*"))
    # Checkpointing every step instead of every 10 does not change the training either.
    assert_bit_identical(reference_run / "model.safetensors", run_dir / "model.safetensors")
