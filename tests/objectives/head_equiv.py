"""Run an objective with the chunked head loss on and off and compare loss, accuracy and gradients."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest
import torch


def assert_chunked_equals_plain(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType, run: Callable[[], tuple[torch.nn.Module, torch.Tensor, dict]]
) -> None:
    """``run()`` builds a fresh model and returns (model, loss, metrics); ``module.chunkable_head`` is forced."""
    results = []
    for chunked in (True, False):
        monkeypatch.setattr(module, "chunkable_head", lambda head, like, c=chunked: c)
        model, loss, metrics = run()
        loss.backward()
        results.append((loss.detach(), metrics["acc"], {n: p.grad for n, p in model.named_parameters()}))
    (l0, a0, g0), (l1, a1, g1) = results
    torch.testing.assert_close(l0, l1)
    assert a0 == a1
    for name in g0:
        torch.testing.assert_close(g0[name], g1[name], msg=name)
