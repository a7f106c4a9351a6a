"""Shared fixtures: the ../shared data folder (skipped when absent), a seeded generator, and a process that
cannot find bubblewrap or setpriv."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from browser import browser  # noqa: F401 (headless Chromium, a fixture for the browser tests)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (place ../shared beside the repo)")
    return SHARED_DATA


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # Tiny test models run several times faster on one thread than on two contended ones.
    torch.set_num_threads(1)
    yield


def _hide(monkeypatch, tool: str):
    """This process no longer finds ``tool`` (as on a machine without it); sandbox probes are redone
    before and after."""
    from nl2code.eval import sandbox

    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == tool else which(name, *a, **k))
    sandbox._reset_probes()
    yield
    sandbox._reset_probes()


@pytest.fixture
def no_bwrap(monkeypatch):
    yield from _hide(monkeypatch, "bwrap")


@pytest.fixture
def no_setpriv(monkeypatch):
    yield from _hide(monkeypatch, "setpriv")
