"""The chunked linear + cross-entropy equals the plain head + F.cross_entropy, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nl2code.objectives import linear_ce
from nl2code.objectives.linear_ce import linear_cross_entropy


def reference(h, w, b, y, coef):
    logits = F.linear(h, w, b)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # the objective's .float(), kept for fp64
    ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
    return (ce * coef).sum(), ce.detach(), logits.argmax(-1)


def case(seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(3, 7, 5, generator=g, dtype=dtype)
    w = torch.randn(37, 5, generator=g, dtype=dtype)
    b = torch.randn(37, generator=g, dtype=dtype)
    y = torch.randint(0, 37, (3, 7), generator=g)
    coef = torch.rand(3, 7, generator=g, dtype=dtype)  # per-position loss weights
    return h, w, b, y, coef


@pytest.mark.parametrize("chunk_bytes", [4 << 20, 4 * 37 * 3])  # one chunk; 3 rows a chunk with a ragged tail
def test_values_and_gradients_match_the_plain_head(monkeypatch, chunk_bytes):
    monkeypatch.setattr(linear_ce, "_CHUNK_BYTES", chunk_bytes)
    h, w, b, y, coef = case(0)
    runs = []
    for fn in (reference, linear_cross_entropy):
        leaves = [t.clone().requires_grad_() for t in (h, w, b)]
        loss, ce, pred = fn(*leaves, y, coef)
        (3.0 * loss).backward()  # a scale applied after the loss reaches every gradient
        runs.append((loss.detach(), ce, pred, [t.grad for t in leaves]))
    (l0, ce0, p0, g0), (l1, ce1, p1, g1) = runs
    torch.testing.assert_close(l1, l0)
    torch.testing.assert_close(ce1, ce0)
    assert torch.equal(p0, p1) and not ce1.requires_grad
    for a, c in zip(g0, g1):
        torch.testing.assert_close(c, a)


def test_gradcheck_no_bias_and_no_grad_mode():
    h, w, b, y, coef = (t[:1] if t.dim() > 1 and t.shape[0] == 3 else t for t in case(1))
    h, w, b = (t.clone().requires_grad_() for t in (h, w, b))
    assert torch.autograd.gradcheck(lambda *a: linear_cross_entropy(*a, y, coef)[0], (h, w, b))
    loss, ce, _ = linear_cross_entropy(h, w, None, y, coef)
    ref = F.cross_entropy((h @ w.t()).flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
    torch.testing.assert_close(ce, ref.detach())
    with torch.no_grad():  # evaluation: no gradients are computed or kept
        loss2, ce2, _ = linear_cross_entropy(h, w, None, y, coef)
    torch.testing.assert_close(loss2, loss.detach())
    torch.testing.assert_close(ce2, ce)
    assert not loss2.requires_grad


def test_fp32_matches_and_tied_weight_gets_both_gradients():
    # A head tied to an embedding: the shared matrix's gradient is the sum of both uses.
    g = torch.Generator().manual_seed(2)
    emb = torch.randn(11, 4, generator=g, requires_grad=True)
    ids = torch.randint(0, 11, (2, 5), generator=g)
    b = torch.zeros(11, requires_grad=True)
    coef = torch.full((2, 5), 0.1)
    grads = []
    for fn in (reference, linear_cross_entropy):
        emb.grad = None
        loss, _, _ = fn(F.embedding(ids, emb), emb, b, ids, coef)
        loss.backward()
        grads.append(emb.grad.clone())
    torch.testing.assert_close(grads[1], grads[0])
