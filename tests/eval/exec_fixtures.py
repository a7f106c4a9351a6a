"""Fixtures and helpers shared by the execution-side eval tests; test modules import them by name."""

from __future__ import annotations

import os

import pytest

from nl2code.data.records import Record
from nl2code.eval import sandbox


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    # Reference runtimes are cached on disk; keep tests away from the user's cache.
    monkeypatch.setenv("NL2CODE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "nl2code-cache"))


@pytest.fixture
def add_one_problem() -> dict[str, Record]:
    """A HumanEval-shaped problem whose correct completion is ``return x + 1``."""
    extras = {
        "prompt": 'def add_one(x):\n    """Return x + 1."""\n',
        "entry_point": "add_one",
        "test": "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(-5) == -4\n",
        "canonical_solution": "    return x + 1\n",
    }
    return {"Toy/0": Record("Toy/0", "test", "Return x + 1.", extras["canonical_solution"], "python", extras)}


def leftover_processes(marker: str | None = None) -> list[str]:
    """Processes running under this test process's sandbox uids, or whose command line holds
    ``marker``: anything a run left behind."""
    found = []
    uids = range(sandbox._UID_BASE, sandbox._UID_BASE + 256)
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/status") as f:
                uid = int(next(ln for ln in f if ln.startswith("Uid:")).split()[1])
        except (OSError, StopIteration, ValueError):
            continue
        if uid in uids or (marker and marker in cmd):
            found.append(f"{pid} uid={uid} {cmd[:120]}")
    return found
