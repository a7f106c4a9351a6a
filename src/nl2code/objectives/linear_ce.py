"""Cross-entropy of a linear head, computed in row chunks without materialising the full logits.

``linear_cross_entropy(h, W, b, y)`` equals ``F.cross_entropy(F.linear(h, W, b).float(), y,
reduction="none")`` (and its gradients), but never holds the (rows, vocab) logits, their log-softmax or
their gradient at once: each chunk of rows is projected, reduced and, in backward, re-projected and
differentiated while it fits in cache. On CPU the full-size tensors were the slow part: a 2048 x 4096
fp32 logits tensor is written and read five times per step (head output, log-softmax, its gradient,
the zero-filled NLL gradient, the bias copy), which took a quarter of a small CodeFusion step.
The re-projection costs one extra (rows x dim x vocab) matmul in backward.
"""

from __future__ import annotations

import torch

__all__ = ["chunkable_head", "linear_cross_entropy"]

_CHUNK_BYTES = 4 << 20  # fp32 logits per chunk: fits in L2/L3 on current CPUs


def _rows_per_chunk(vocab: int) -> int:
    return max(1, _CHUNK_BYTES // (4 * vocab))


class _LinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, target):  # noqa: ANN001 - autograd signature
        rows = _rows_per_chunk(weight.shape[0])
        acc = torch.promote_types(h.dtype, torch.float32)
        losses, preds = [], []
        for lo in range(0, h.shape[0], rows):
            z = torch.addmm(bias, h[lo : lo + rows], weight.t()).to(acc)
            lse = torch.logsumexp(z, dim=-1)
            losses.append(lse - z.gather(1, target[lo : lo + rows, None]).squeeze(1))
            preds.append(z.argmax(-1))
        ctx.save_for_backward(h, weight, bias, target)
        pred = torch.cat(preds)
        ctx.mark_non_differentiable(pred)
        return torch.cat(losses), pred

    @staticmethod
    def backward(ctx, grad_loss, _grad_pred):  # noqa: ANN001
        h, weight, bias, target = ctx.saved_tensors
        rows = _rows_per_chunk(weight.shape[0])
        grad_h = torch.empty_like(h) if ctx.needs_input_grad[0] else None
        acc = torch.promote_types(h.dtype, torch.float32)
        grad_w = torch.zeros_like(weight, dtype=acc)
        grad_b = torch.zeros_like(bias, dtype=acc)
        for lo in range(0, h.shape[0], rows):
            hc = h[lo : lo + rows]
            z = torch.addmm(bias, hc, weight.t()).to(acc)
            g = torch.softmax(z, dim=-1)  # d ce / d z = softmax(z) - onehot(target), times the upstream grad
            g.scatter_add_(1, target[lo : lo + rows, None], torch.full_like(g[:, :1], -1.0))
            g.mul_(grad_loss[lo : lo + rows, None].to(acc))
            gc = g.to(h.dtype)
            if grad_h is not None:
                grad_h[lo : lo + rows] = gc @ weight
            grad_w.addmm_(g.t(), hc.to(acc))
            grad_b.add_(g.sum(0))
        return grad_h, grad_w.to(weight.dtype), grad_b.to(bias.dtype), None


def chunkable_head(head: object, like: torch.Tensor) -> bool:
    """Whether ``head``'s loss may take the chunked path: a plain ``nn.Linear`` (not a LoRA or NF4 wrapper,
    whose weight is not the whole map) and autocast off (the plain path follows autocast's dtype)."""
    return type(head) is torch.nn.Linear and not torch.is_autocast_enabled(like.device.type)


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-position cross-entropy, per-position argmax) of ``hidden @ weight.T + bias`` against ``target``.

    ``hidden``: (..., E); ``weight``: (V, E); ``bias``: (V,) or None; ``target``: (...) ids in [0, V).
    Logits are reduced in at least fp32 whatever the input dtype. No ``ignore_index``: weight positions afterwards.
    """
    lead = target.shape
    if bias is None:
        bias = hidden.new_zeros(weight.shape[0])
    loss, pred = _LinearCE.apply(hidden.reshape(-1, hidden.shape[-1]), weight, bias, target.reshape(-1))
    return loss.view(lead), pred.view(lead)
