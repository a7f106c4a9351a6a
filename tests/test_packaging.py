"""Packaging: the wheel ships the configs, and the core install (no extras) trains and answers --help.

The core-install test builds a fresh virtual environment with ``torch`` and the wheel's core
dependencies only (from the package index the machine is configured with), so it is marked slow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def build_wheel(out: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return next(out.glob("nl2code-*.whl"))


def test_wheel_contains_the_configs(tmp_path):
    names = zipfile.ZipFile(build_wheel(tmp_path)).namelist()
    shipped = {n.removeprefix("nl2code/") for n in names if n.startswith("nl2code/configs/")}
    in_tree = {p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.yaml")}
    assert in_tree and shipped == in_tree
    assert "nl2code/serve/playground.html" in names


@pytest.mark.slow
def test_core_install_helps_and_trains_from_any_directory(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True, timeout=1200)  # the CPU wheel, as the Makefile pins
    subprocess.run([*pip, str(wheel)], check=True, timeout=1200)
    extras = "import importlib.util as u; print([m for m in ('fastapi', 'uvicorn', 'matplotlib', 'tensorboard', " \
             "'pandas', 'transformers') if u.find_spec(m)])"  # fmt: skip
    assert subprocess.run([str(py), "-c", extras], capture_output=True, text=True).stdout.strip() == "[]"
    nl2code = str(env_dir / "bin" / "nl2code")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": ""}
    r = subprocess.run([nl2code, "--help"], cwd=work, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "report" in r.stdout
    r = subprocess.run(
        [nl2code, "train", "configs/smoke/codegen.yaml", "--run-dir", "run", "train.max_steps=5", "train.eval_every=0",
         "train.sample_every=0", "data.options.max_functions=300", "train.progress=off"],
        cwd=work, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (work / "run" / "model.safetensors").is_file() and "TensorBoard logging is off" in r.stdout + r.stderr
    r = subprocess.run([nl2code, "serve", "--run", "run"], cwd=work, capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "pip install 'nl2code[serve]'" in r.stderr
