"""The chunked linear + cross-entropy equals the plain head + F.cross_entropy, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nl2code.objectives import linear_ce
from nl2code.objectives.linear_ce import linear_cross_entropy


def reference(h, w, b, y):
    logits = F.linear(h, w, b)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # the objective's .float(), kept for fp64
    ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
    return ce, logits.argmax(-1)


@pytest.mark.parametrize("chunk_bytes", [4 << 20, 4 * 37 * 3])  # one chunk; 3 rows a chunk with a ragged tail
def test_values_and_gradients_match_the_plain_head(monkeypatch, chunk_bytes):
    monkeypatch.setattr(linear_ce, "_CHUNK_BYTES", chunk_bytes)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 7, 5, generator=g, dtype=torch.float64)
    w = torch.randn(37, 5, generator=g, dtype=torch.float64)
    b = torch.randn(37, generator=g, dtype=torch.float64)
    y = torch.randint(0, 37, (3, 7), generator=g)
    upstream = torch.rand(3, 7, generator=g, dtype=torch.float64)  # per-position loss weights
    grads = []
    for fn in (reference, linear_cross_entropy):
        leaves = [t.clone().requires_grad_() for t in (h, w, b)]
        ce, pred = fn(*leaves, y)
        (ce * upstream).sum().backward()
        grads.append((ce.detach(), pred, [t.grad for t in leaves]))
    (ce0, p0, g0), (ce1, p1, g1) = grads
    torch.testing.assert_close(ce1, ce0.to(ce1.dtype))
    assert torch.equal(p0, p1)
    for a, c in zip(g0, g1):
        torch.testing.assert_close(c, a)


def test_gradcheck_and_no_bias():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 5, 2, 2])
    assert torch.autograd.gradcheck(lambda *a: linear_cross_entropy(*a, y)[0], (h, w, b))
    ce, _ = linear_cross_entropy(h, w, None, y)
    torch.testing.assert_close(ce, F.cross_entropy(h @ w.t(), y, reduction="none"))


def test_tied_weight_gets_both_gradients():
    # A head tied to an embedding: the shared matrix's gradient is the sum of both uses.
    g = torch.Generator().manual_seed(2)
    emb = torch.randn(11, 4, generator=g, requires_grad=True)
    ids = torch.randint(0, 11, (2, 5), generator=g)
    b = torch.zeros(11, requires_grad=True)
    grads = []
    for fn in (reference, linear_cross_entropy):
        emb.grad = None
        ce, _ = fn(F.embedding(ids, emb), emb, b, ids)
        ce.mean().backward()
        grads.append(emb.grad.clone())
    torch.testing.assert_close(grads[1], grads[0])
