"""A real tiny run (the smoke CodeGen config, 30 steps) served by a real uvicorn server in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nl2code.train.config import load_run_config
    from nl2code.train.run import run_training

    run_dir = tmp_path_factory.mktemp("serve") / "run"
    config = REPO / "configs" / "smoke" / "codegen.yaml"
    overrides = [
        "train.max_steps=30",
        "train.progress='off'",
        "train.tensorboard=false",
        "train.eval_every=0",
        "train.sample_every=0",
        "data.options.max_functions=600",
    ]
    cfg, stages = load_run_config(config, overrides)
    assert run_training(cfg, run_dir, stages=stages, source=str(config)) == "completed"
    return run_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(app: object) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread; yields its base URL."""
    import uvicorn

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def server(tiny_run: Path) -> Iterator[tuple[str, object]]:
    """(base URL, app) of a server over the tiny run, up for the whole session."""
    from nl2code.api import load_generator
    from nl2code.serve import create_app

    app = create_app(load_generator(tiny_run), model_name="tiny", max_wait_ms=20)
    with serve_app(app) as url:
        yield url, app


@pytest.fixture
def serve() -> object:
    """:func:`serve_app`, for tests that start a server over their own app."""
    return serve_app
