"""Next-token cross-entropy for causal LMs (plain, and FIM: FIM batches are just reordered tokens)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nl2code.config import register
from nl2code.data.collate import Batch
from nl2code.objectives.base import Objective


@register("objective", "causal_lm")
@dataclass(frozen=True)
class CausalLMConfig:
    """Next-token prediction.

    Attributes:
        label_smoothing: cross-entropy label smoothing in [0, 1).
    """

    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


def target_mask(batch: Batch) -> torch.Tensor:
    """(B, T-1) bool: which next-token targets ``input_ids[:, 1:]`` are scored."""
    return batch.loss_mask[:, 1:] & batch.attention_mask[:, 1:]


class CausalLMObjective(Objective):
    """Mean cross-entropy of ``input_ids[t+1]`` given ``input_ids[:t+1]`` over target tokens.

    Padding and prompt tokens (``loss_mask`` False) are ignored. Batches are right-padded, so the
    model runs with plain causal attention: a real token can never attend to a later pad.
    The model's ``aux_loss`` (e.g. MoE balance), when present, is added to the loss.
    """

    def __init__(self, cfg: CausalLMConfig | None = None):
        self.cfg = cfg or CausalLMConfig()

    def __call__(
        self, model: nn.Module, batch: Batch, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = model(batch.input_ids)
        logits = out.logits[:, :-1].float()  # (B, T-1, V)
        smoothing = self.cfg.label_smoothing
        targets = batch.input_ids[:, 1:]  # (B, T-1)
        mask = target_mask(batch)
        n = mask.sum().clamp(min=1)
        ce = F.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), reduction="none", label_smoothing=smoothing
        )
        ce = (ce * mask.flatten()).sum() / n
        with torch.no_grad():
            acc = ((logits.argmax(-1) == targets) & mask).sum() / n
        metrics = {"ce": ce.detach(), "acc": acc}
        loss = ce
        if out.aux_loss is not None:
            loss = loss + out.aux_loss
            metrics["aux_loss"] = out.aux_loss.detach()
        return loss, metrics

    def weight(self, batch: Batch) -> int:
        return int(target_mask(batch).sum())

    @torch.no_grad()
    def preview(
        self,
        model: nn.Module,
        prompts: list[list[int]],
        *,
        max_new_tokens: int,
        eos_id: int,
        generator: torch.Generator,
    ) -> list[list[int]]:
        """Greedy continuation of each prompt, recomputing the full context each token.

        No KV cache: previews are a few short sequences, and this keeps the preview independent of
        the samplers.
        """
        device = next(model.parameters()).device
        max_len = getattr(getattr(model, "cfg", None), "max_seq_len", None)
        outputs = []
        for prompt in prompts:
            ids = torch.tensor([prompt], dtype=torch.long, device=device)
            new: list[int] = []
            for _ in range(max_new_tokens):
                context = ids if max_len is None else ids[:, -max_len:]
                nxt = int(model(context).logits[0, -1].argmax())
                if nxt == eos_id:
                    break
                new.append(nxt)
                ids = torch.cat([ids, ids.new_tensor([[nxt]])], dim=1)
            outputs.append(new)
        return outputs
