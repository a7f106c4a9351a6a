"""Next-token cross-entropy for causal LMs: plain (``causal_lm``) and the CodeGen2 infill mixture
(``codegen2_mixture``: span corruption and FIM are just rewritten token sequences, so the loss is
the same; the objective only asks the batch stream for the rewrite, see ``example_transform``).

A model whose config sets ``prefix_lm`` gets a bidirectional prefix: the tokens before each row's
first target (with ``data.loss_on: code``, the NL and ``<sep>``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nl2code.data.collate import Batch, Example
from nl2code.models.codegen import CodeGenLM
from nl2code.objectives.base import Objective
from nl2code.objectives.linear_ce import head_loss, logits_loss


@dataclass(frozen=True)
class CausalLMConfig:
    """Next-token prediction.

    Attributes:
        label_smoothing: cross-entropy label smoothing in [0, 1).
        chunked_head: compute the head's cross-entropy in row chunks, never holding the logits (same
            values and gradients; off with label smoothing, and ``false`` forces the full-logits path).
        retrieval_k: retrieval-augmented prompts (``data.format: nl_code`` only): each row is
            prefixed with the commands of the ``retrieval_k`` training utterances nearest to its NL
            (TF-IDF, the row itself left out), ``cmd_1 \\n ... <eom> NL <sep> code <eos>``; generation
            builds the same prompt from the run's training data. 0 = off (the paper-faithful prompt).
            See :mod:`nl2code.data.retrieval`.
        cond_dropout: classifier-free guidance training (``data.format: nl_code``; not in CodeGen): each row
            loses its utterance with this probability, ``<sep> code <eos>``, so the model also learns the
            empty request that guided sampling contrasts against (``GenerationConfig.guidance``). 0 = off.
    """

    label_smoothing: float = 0.0
    chunked_head: bool = True
    retrieval_k: int = 0
    cond_dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.retrieval_k < 0:
            raise ValueError(f"retrieval_k must be >= 0, got {self.retrieval_k}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.cond_dropout and self.retrieval_k:
            raise ValueError("cond_dropout and retrieval_k cannot be combined (the empty request has no neighbours)")


@dataclass(frozen=True)
class CodeGen2MixtureConfig:
    """CodeGen2's objective mixture: next-token CE on files that are, each with its own draw,
    span-corrupted (prob. ``span_rate``), else FIM-rewritten (prob. ``fim_rate``), else left as is.

    With the defaults a file is span-corrupted 50%, FIM 25% (half PSM, half SPM), plain 25%.
    CodeGen2 itself is ``fim_rate: 0``; FIM-only training (Bavarian et al.) is ``span_rate: 0``.
    Rewrites are drawn fresh every epoch; evaluation batches stay plain left-to-right.

    Attributes:
        label_smoothing: cross-entropy label smoothing in [0, 1).
        span_rate: probability that a file is span-corrupted.
        fim_rate: probability that a file that is not span-corrupted is FIM-rewritten.
        spm_rate: share of FIM rewrites in SPM order (the rest PSM).
        mask_ratio: per file, the masked fraction is drawn uniformly from this [low, high] range.
        mean_span_len: average masked span length in tokens (sets the number of spans).
        max_spans: most spans (sentinels) per file; at most the tokenizer's sentinel count.
        loss_on: ``all`` tokens of a rewritten file (CodeGen2) or only its ``answer`` part.
        chunked_head: as in :class:`CausalLMConfig`.
    """

    label_smoothing: float = 0.0
    chunked_head: bool = True
    span_rate: float = 0.5
    fim_rate: float = 0.5
    spm_rate: float = 0.5
    mask_ratio: tuple[float, float] = (0.05, 0.5)
    mean_span_len: float = 8.0
    max_spans: int = 16
    loss_on: Literal["all", "answer"] = "all"

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        for name in ("span_rate", "fim_rate", "spm_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        lo, hi = self.mask_ratio
        if not 0.0 <= lo <= hi < 1.0:
            raise ValueError(f"mask_ratio must be [low, high] with 0 <= low <= high < 1, got {list(self.mask_ratio)}")
        if self.mean_span_len < 1 or self.max_spans < 1:
            raise ValueError("mean_span_len and max_spans must be >= 1")


def target_mask(batch: Batch) -> torch.Tensor:
    """(B, T-1) bool: which next-token targets ``input_ids[:, 1:]`` are scored."""
    return batch.loss_mask[:, 1:] & batch.attention_mask[:, 1:]


def prefix_mask(batch: Batch) -> torch.Tensor:
    """(B, T) bool: the real tokens before each row's first target (the prefix of a prefix-LM)."""
    return (batch.loss_mask.long().cumsum(-1) == 0) & batch.attention_mask


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel keeps the model in .module


class CausalLMObjective(Objective):
    """Mean cross-entropy of ``input_ids[t+1]`` given ``input_ids[:t+1]`` over target tokens.

    Padding and prompt tokens (``loss_mask`` False) are ignored. Batches are right-padded, so the
    model runs with plain causal attention: a real token can never attend to a later pad.
    The model's ``aux_loss`` (e.g. MoE balance), when present, is added to the loss.
    """

    def __init__(self, cfg: CausalLMConfig | CodeGen2MixtureConfig | None = None):
        self.cfg = cfg or CausalLMConfig()

    def __call__(
        self, model: nn.Module, batch: Batch, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        inner = _unwrap(model)
        kwargs: dict[str, torch.Tensor] = {}
        if getattr(getattr(inner, "cfg", None), "prefix_lm", False):
            kwargs["prefix_mask"] = prefix_mask(batch)
        if getattr(inner, "moe_layers", None) and inner.moe_layers():
            kwargs["attention_mask"] = batch.attention_mask  # MoE blocks must not route padding
        # Score every position against the next token (the last has none: weight 0) rather than slicing
        # logits[:, :-1]: the slice copied the (B, T-1, V) logits and back-propagated through a
        # zero-filled (B, T, V) gradient, ~3% of a CPU training step (benchmarks/train_throughput.md).
        targets = F.pad(batch.input_ids[:, 1:], (0, 1))  # (B, T)
        mask = F.pad(target_mask(batch), (0, 1))  # (B, T)
        n = mask.sum().clamp(min=1)
        cfg, coef = self.cfg, mask / n
        if isinstance(inner, CodeGenLM) and inner.copy is None:
            # The model skips its logits: head_loss applies lm_head itself, in row chunks where it can,
            # so the (B, T, V) logits are never held there (benchmarks/head_loss.md).
            out = model(batch.input_ids, compute_logits=False, **kwargs)
            ce, pred = head_loss(
                inner.lm_head, out.hidden, targets, coef, label_smoothing=cfg.label_smoothing, chunked=cfg.chunked_head
            )
        else:  # any other model returning ModelOutput logits
            out = model(batch.input_ids, **kwargs)
            ce, pred = logits_loss(out.logits, targets, coef, label_smoothing=cfg.label_smoothing)
        with torch.no_grad():
            acc = ((pred == targets) & mask).sum() / n
        metrics = {"ce": ce.detach(), "acc": acc}
        loss = ce
        if out.aux_loss is not None:
            loss = loss + out.aux_loss
            metrics["aux_loss"] = out.aux_loss.detach()
        if hasattr(inner, "moe_metrics"):
            metrics.update(inner.moe_metrics())
        return loss, metrics

    def weight(self, batch: Batch) -> int:
        return int(target_mask(batch).sum())

    def example_transform(
        self, tokenizer: Any, data_cfg: Any
    ) -> Callable[[Example, np.random.Generator], Example] | None:
        """With ``retrieval_k > 0``: prefix every ``NL <sep> code <eos>`` row with its retrieved commands; with
        ``cond_dropout > 0``: drop the utterance of some rows (:class:`DropRequest`)."""
        k, drop = getattr(self.cfg, "retrieval_k", 0), getattr(self.cfg, "cond_dropout", 0.0)
        if not (k or drop):
            return None
        if data_cfg.format != "nl_code":
            knob = "retrieval_k" if k else "cond_dropout"
            raise ValueError(f"objective.{knob} needs data.format: nl_code, not {data_cfg.format}")
        if drop:
            return DropRequest(tokenizer.sep_id, drop)
        from nl2code.data.retrieval import retriever_for

        return RetrievalPrefix(tokenizer, retriever_for(data_cfg), k, data_cfg.max_len)

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
        cfg = getattr(model, "cfg", None)
        max_len = getattr(cfg, "max_seq_len", None)
        outputs = []
        for prompt in prompts:
            ids = torch.tensor([prompt], dtype=torch.long, device=device)
            new: list[int] = []
            for _ in range(max_new_tokens):
                context = ids if max_len is None else ids[:, -max_len:]
                kwargs = {}
                if getattr(cfg, "prefix_lm", False):  # the (visible part of the) prompt is the prefix
                    visible_prompt = len(prompt) - (ids.shape[1] - context.shape[1])
                    kwargs["prefix_mask"] = (torch.arange(context.shape[1], device=device) < visible_prompt)[None]
                nxt = int(model(context, **kwargs).logits[0, -1].argmax())
                if nxt == eos_id:
                    break
                new.append(nxt)
                ids = torch.cat([ids, ids.new_tensor([[nxt]])], dim=1)
            outputs.append(new)
        return outputs


class DropRequest:
    """Row rewrite ``NL <sep> code <eos>`` -> ``<sep> code <eos>`` with probability ``rate``, drawn from the
    stream's per-row generator (fresh each epoch, resumable); the empty request ``<sep>`` is what a guided
    sampler continues for the unconditional half."""

    def __init__(self, sep_id: int, rate: float):
        self.sep_id, self.rate = sep_id, rate

    def __call__(self, ex: Example, rng: np.random.Generator | None = None) -> Example:
        if rng is None:
            raise ValueError("cond_dropout draws from the batch stream's per-row generator; none was given")
        if rng.random() >= self.rate:
            return ex
        seps = np.flatnonzero(ex.input_ids == self.sep_id)
        if not len(seps):
            raise ValueError("cond_dropout: a training row without <sep> (data.format must be nl_code)")
        s = int(seps[0])
        return Example(ex.input_ids[s:], ex.loss_mask[s:], ex.extras)


class RetrievalPrefix:
    """Row rewrite ``NL <sep> code <eos>`` -> ``cmd_1 \\n ... <eom> NL <sep> code <eos>`` (prefix unscored).

    The row's own training pair is left out of its neighbours; the prefix keeps whole commands
    while the row fits ``max_len``. Deterministic (the generator is unused), cached per row.
    """

    def __init__(self, tok: Any, retriever: Any, k: int, max_len: int):
        self.tok, self.retriever, self.k, self.max_len = tok, retriever, k, max_len
        self._cache: dict[bytes, np.ndarray] = {}

    def __call__(self, ex: Example, rng: np.random.Generator | None = None) -> Example:
        from nl2code.data.retrieval import retrieved_prefix

        ids = ex.input_ids
        key = ids.tobytes()
        if key not in self._cache:
            tok = self.tok
            seps = np.flatnonzero(ids == tok.sep_id)
            if not len(seps):
                raise ValueError("retrieval_k: a training row without <sep> (data.format must be nl_code)")
            s = int(seps[0])
            nl = tok.decode(ids[:s].tolist())
            end = len(ids) - 1 if ids[-1] == tok.eos_id else len(ids)
            code = tok.decode(ids[s + 1 : end].tolist())
            own = self.retriever.row_of(nl, code)
            self._cache[key] = np.array(
                retrieved_prefix(tok, self.retriever, nl, self.k, self.max_len - len(ids), exclude=own), dtype=np.int64
            )
        prefix = self._cache[key]
        return Example(np.concatenate([prefix, ids]), np.concatenate([np.zeros(len(prefix), bool), ex.loss_mask]))


class CodeGen2MixtureObjective(CausalLMObjective):
    """Next-token CE over rows rewritten by :class:`~nl2code.data.noising.InfillMixture`.

    The rewrite needs the tokenizer (FIM cuts the decoded text), so it runs in the batch stream:
    :meth:`example_transform` hands the stream a function applied to every training row with a
    random generator derived from (seed, epoch, row) - fresh each epoch and exactly resumable.
    """

    cfg: CodeGen2MixtureConfig

    def __init__(self, cfg: CodeGen2MixtureConfig | None = None):
        super().__init__(cfg or CodeGen2MixtureConfig())

    def example_transform(self, tokenizer: Any, data_cfg: Any) -> Callable[[Example, np.random.Generator], Example]:
        from nl2code.data.noising import InfillMixture, SpecialIds

        cfg = self.cfg
        if cfg.max_spans > tokenizer.num_sentinels:
            raise ValueError(
                f"objective.max_spans {cfg.max_spans} exceeds the tokenizer's "
                f"{tokenizer.num_sentinels} <mask_i> sentinels"
            )
        return InfillMixture(
            special=SpecialIds.from_tokenizer(tokenizer),
            encode=tokenizer.encode,
            decode=tokenizer.decode,
            max_len=data_cfg.max_len,
            span_rate=cfg.span_rate,
            fim_rate=cfg.fim_rate,
            spm_rate=cfg.spm_rate,
            mask_ratio=cfg.mask_ratio,
            mean_span_len=cfg.mean_span_len,
            max_spans=cfg.max_spans,
            protect_prefix=data_cfg.format == "nl_code",
            loss_on=cfg.loss_on,
        )
