"""Fixtures for training tests: a tiny tokenizer, fast run overrides and a subprocess runner.

Subprocess runs pin OMP_NUM_THREADS=1: bit-identical comparisons need the same thread count in
every run, and one thread is also the fastest setting on a busy 2-core machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke" / "codegen.yaml"

# A ~20k-parameter model on 300 stdlib functions: ~20 ms per step on one core.
FAST = [
    "data.options.max_functions=300",
    "data.max_len=64",
    "model.d_model=32",
    "model.max_seq_len=64",
    "train.batch_size=8",
    "train.max_steps=30",
    "train.warmup_steps=5",
    "train.ckpt_every=10",
    "train.keep_last=3",
    "train.log_every=1",
    "train.eval_every=10",
    "train.eval_batches=2",
    "train.sample_every=0",
    "train.tensorboard=false",
]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models are latency-bound: a second intra-op thread only adds spin-waits on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nl2code.data.sources import load_source
    from nl2code.data.tokenizer import CodeTokenizer

    recs = load_source("pysource", None, max_functions=300).records
    out = tmp_path_factory.mktemp("tok")
    CodeTokenizer.train([t for r in recs for t in (r.nl, r.code)], vocab_size=400).save(out)
    return out


@pytest.fixture(scope="session")
def fast_overrides(tokenizer_dir: Path) -> list[str]:
    return [*FAST, f"tokenizer.path={tokenizer_dir}"]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def train_cmd(run_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "nl2code", "train", str(SMOKE), "--run-dir", str(run_dir), *args]


@pytest.fixture(scope="session")
def run_train() -> Callable[..., subprocess.CompletedProcess]:
    """``run_train(run_dir, *args)``: ``nl2code train`` on the smoke config in a subprocess.

    ``launcher`` replaces ``python`` (e.g. ``[python, -m, torch.distributed.run, ...]``).
    """

    def run(run_dir: Path, *args: str, check: bool = True, launcher: list[str] | None = None):
        cmd = train_cmd(run_dir, *args)
        if launcher:
            cmd = [*launcher, *cmd[1:]]
        proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\n{proc.stderr[-3000:]}")
        return proc

    return run


@pytest.fixture(scope="session")
def popen_train() -> Callable[..., subprocess.Popen]:
    """``popen_train(run_dir, *args)``: start a run in the background; its stderr goes to run_dir.log."""

    def start(run_dir: Path, *args: str) -> subprocess.Popen:
        log = open(Path(f"{run_dir}.log"), "w")  # noqa: SIM115 (the child owns it; closed on exit)
        return subprocess.Popen(train_cmd(run_dir, *args), env=_env(), stdout=log, stderr=subprocess.STDOUT)

    return start


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory, run_train, fast_overrides) -> Path:
    """One uninterrupted run of the fast config; the resume and DDP tests compare against it."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    run_train(run_dir, *fast_overrides)
    return run_dir
