"""Weighted cross-entropy of a linear head, computed in row chunks without materialising the logits.

``linear_cross_entropy(h, W, b, y, coef)`` returns ``sum(coef * CE(h @ W.T + b, y))`` (with the
per-position CE and argmax, detached) and back-propagates exactly as the plain head followed by
``F.cross_entropy`` would, but never holds the (rows, vocab) logits, their log-softmax or their
gradient at once. On CPU those full-size tensors were a large part of a small model's step: a
2048 x 4096 fp32 logits tensor is written and read five times (head output, log-softmax, its
gradient, the zero-filled NLL gradient, the bias copy).

The loss is the end of the graph and its per-position weights ``coef`` are known up front, so each
chunk's gradients (``(softmax - onehot) * coef`` pushed through the head) are computed in forward
while the chunk's logits are in cache; backward only scales them by the incoming scalar. The FLOPs
equal the plain head's; no logits are recomputed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["chunkable_head", "head_loss", "linear_cross_entropy", "logits_loss"]

_CHUNK_BYTES = 4 << 20  # fp32 logits per chunk: fits in L2/L3 on current CPUs


def _rows_per_chunk(vocab: int) -> int:
    return max(1, _CHUNK_BYTES // (4 * vocab))


def _run(h, weight, bias, target, coef, grads: bool):  # noqa: ANN001, ANN202
    """(loss, ce, pred, grad_h, grad_w, grad_b) over row chunks; the grads are None unless ``grads``."""
    acc = torch.promote_types(h.dtype, torch.float32)
    rows = _rows_per_chunk(weight.shape[0])
    coef, weight_acc = coef.to(acc), weight.to(acc)
    ce_parts, preds = [], []
    grad_h = torch.empty_like(h) if grads else None
    grad_w = torch.zeros_like(weight, dtype=acc) if grads else None
    grad_b = torch.zeros_like(bias, dtype=acc) if grads else None
    for lo in range(0, h.shape[0], rows):
        hc, yc = h[lo : lo + rows], target[lo : lo + rows, None]
        z = torch.addmm(bias, hc, weight.t()).to(acc)
        lse = torch.logsumexp(z, dim=-1)
        ce_parts.append(lse - z.gather(1, yc).squeeze(1))
        preds.append(z.argmax(-1))
        if grads:
            g = z.sub_(lse[:, None]).exp_()  # softmax, in place of the chunk's logits
            g.scatter_add_(1, yc, torch.full_like(g[:, :1], -1.0))  # - onehot(target)
            g.mul_(coef[lo : lo + rows, None])
            grad_h[lo : lo + rows] = (g @ weight_acc).to(h.dtype)
            grad_w.addmm_(g.t(), hc.to(acc))
            grad_b.add_(g.sum(0))
    ce = torch.cat(ce_parts)
    loss = (ce * coef).sum()
    return loss, ce, torch.cat(preds), grad_h, grad_w, grad_b


class _LinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, target, coef):  # noqa: ANN001 - autograd signature
        loss, ce, pred, gh, gw, gb = _run(h, weight, bias, target, coef, grads=True)
        ctx.save_for_backward(gh, gw.to(weight.dtype), gb.to(bias.dtype))
        ctx.mark_non_differentiable(ce, pred)
        return loss, ce, pred

    @staticmethod
    def backward(ctx, grad_loss, _grad_ce, _grad_pred):  # noqa: ANN001
        gh, gw, gb = ctx.saved_tensors
        return gh * grad_loss, gw * grad_loss, gb * grad_loss, None, None


def chunkable_head(head: nn.Module) -> bool:
    """Whether ``head``'s loss may take the chunked path: a plain ``nn.Linear`` (not a LoRA or NF4 wrapper,
    whose weight is not the whole map) and autocast off (the plain path follows autocast's dtype)."""
    return type(head) is nn.Linear and not torch.is_autocast_enabled(head.weight.device.type)


def head_loss(
    head: nn.Module,
    hidden: torch.Tensor,
    target: torch.Tensor,
    coef: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    chunked: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(``sum(coef * CE(head(hidden), target))``, argmax of the logits): the objectives' head loss.

    Chunked (:func:`linear_cross_entropy`) when ``chunked`` and :func:`chunkable_head` allow it and there
    is no label smoothing; otherwise the full logits go through :func:`logits_loss`.
    """
    if chunked and label_smoothing == 0 and chunkable_head(head):
        loss, _, pred = linear_cross_entropy(hidden, head.weight, head.bias, target, coef)
        return loss, pred
    return logits_loss(head(hidden), target, coef, label_smoothing=label_smoothing)


def logits_loss(
    logits: torch.Tensor, target: torch.Tensor, coef: torch.Tensor, *, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`head_loss` for logits a model already computed: (``sum(coef * CE)`` in fp32, argmax)."""
    logits = logits.float()
    ce = F.cross_entropy(
        logits.flatten(0, 1), target.flatten(), reduction="none", label_smoothing=label_smoothing
    ).view(target.shape)
    return (ce * coef).sum(), logits.detach().argmax(-1)


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    target: torch.Tensor,
    coef: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, per-position CE, per-position argmax) of ``hidden @ weight.T + bias`` against ``target``.

    ``hidden``: (..., E); ``weight``: (V, E); ``bias``: (V,) or None; ``target`` and ``coef``: (...).
    ``loss = sum(coef * CE)`` is differentiable in ``hidden``, ``weight`` and ``bias`` (not in ``coef``);
    CE and argmax are detached. Logits are reduced in at least fp32 whatever the input dtype.
    """
    lead = target.shape
    if bias is None:
        bias = hidden.new_zeros(weight.shape[0])
    args = (hidden.reshape(-1, hidden.shape[-1]), weight, bias, target.reshape(-1), coef.detach().reshape(-1))
    if torch.is_grad_enabled() and any(t.requires_grad for t in args[:3]):
        loss, ce, pred = _LinearCE.apply(*args)
    else:
        loss, ce, pred = _run(*args, grads=False)[:3]
    return loss, ce.view(lead), pred.view(lead)
