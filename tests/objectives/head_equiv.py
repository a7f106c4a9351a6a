"""Run an objective with the chunked head loss on and off and compare loss, accuracy and gradients."""

from __future__ import annotations

from collections.abc import Callable

import torch


def assert_chunked_equals_plain(run: Callable[[bool], tuple[torch.nn.Module, torch.Tensor, dict]]) -> None:
    """``run(chunked)`` builds a fresh model and returns (model, loss, metrics) with ``chunked_head=chunked``."""
    results = []
    for chunked in (True, False):
        model, loss, metrics = run(chunked)
        loss.backward()
        results.append((loss.detach(), metrics["acc"], {n: p.grad for n, p in model.named_parameters()}))
    (l0, a0, g0), (l1, a1, g1) = results
    torch.testing.assert_close(l0, l1)
    assert a0 == a1
    for name in g0:
        torch.testing.assert_close(g0[name], g1[name], msg=name)
