"""CodeFusion's GENIE-adapted three-term loss, for fine-tuning and both pre-training tasks.

codefusion.md §4: ``L_t = |N-term| + |D(x^_0, E_s) - L(y)| + CE(H(D_s), y)``:

1. the denoiser's regression term: MSE of ``x^_0`` against ``x_0 = L(y)`` (``prediction="sample"``)
   or of ``eps^`` against ``eps`` (``prediction="epsilon"``); norms are MSE as in GENIE's code (§4);
2. the decoder term: MSE of ``D_s = D(x^_0, E(s))`` against ``L(y)``;
3. cross-entropy of ``H(D_s)`` against ``y``.

Without a decoder (``decoder_layers=0``, the GENIE-style baseline) term 2 vanishes and term 3 becomes
GENIE's rounding loss ``CE(H(L(y)), y)`` (§8), which keeps the embeddings decodable.

Tasks (§5): ``finetune`` encodes the utterance (``batch.extras["nl"]``); ``unconditional`` replaces
``E(s)`` with fresh N(0, I) noise; ``cpd`` encodes the code with a random subset of its identifier and
keyword occurrences masked (``batch.extras["cpd_groups"]``, see ``nl2code.data.cpd``) and
reconstructs the whole code. The same loss is used in every stage (§4).

Padding: code is padded with ``pad_id`` to the model's fixed ``code_length`` (§2), and pad positions are
diffused and scored too, because the sampler finds the program's end by the first predicted pad/eos.
``pad_weight`` scales their share of each sequence's loss. Timesteps are uniform (§10.11) unless
``timestep_power`` skews them; ``min_snr_gamma`` weights term 1 per row by min-SNR-gamma. Under the
model's ``score_interpolation`` term 1 is the cross-entropy of N's token scores against ``y`` (CDCD).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from nl2code.data.collate import Batch, Example
from nl2code.data.cpd import cpd_mask, groups_from_ids
from nl2code.diffusion.gaussian import GaussianScheduler
from nl2code.models.codefusion import CodeFusion, scheduler_for
from nl2code.objectives.base import Objective
from nl2code.objectives.linear_ce import head_loss, logits_loss
from nl2code.sampling.diffusion import DiffusionSampler

Task = Literal["finetune", "unconditional", "cpd"]


@dataclass(frozen=True)
class CodeFusionLossConfig:
    """CodeFusion objective.

    Attributes:
        task: ``finetune`` (NL -> code), ``unconditional`` (pre-training a) or ``cpd`` (pre-training b).
        denoise_weight: weight of term 1 (the paper sums the three terms unweighted).
        decoder_weight: weight of term 2.
        ce_weight: weight of term 3.
        pad_weight: relative weight of pad positions within a sequence (1 = plain mean over n).
        clean_decode_fraction: share of the rows whose decoder reads the clean ``L(y)`` instead of
            ``x^_0`` (not in the paper). With uniform t most of D's inputs carry little token
            information, and D learns to lean on ``E(s)`` instead of its input (issue #18: H(D(L(y)))
            got 89% of Bash tokens right); these rows teach D to read and round its input.
        cpd_mask_rate: probability of masking each identifier/keyword occurrence (``cpd`` only).
        cpd_collapse: a masked occurrence becomes one ``<mask>`` (GENIE) rather than one per token.
        mask_id: the tokenizer's ``<mask>`` id (``CodeTokenizer.mask_id`` is 2).
        preview_steps: reverse steps of the training-time sample preview (DDIM, eta = 0).
        retrieval_k: retrieval-augmented conditioning (not in the paper; ``finetune`` with
            ``data.format: code_nl``): the encoder reads ``cmd_1 \\n ... <eom> NL``, the commands of
            the ``retrieval_k`` training utterances nearest to NL (never the row's own), within
            ``data.max_len`` tokens (keep ``model.max_nl_length`` >= it). See :mod:`nl2code.data.retrieval`.
        timestep_power: training timesteps ``floor(T u^p)`` (``GaussianScheduler.sample_timesteps``);
            1 = uniform (the paper), > 1 more low-noise steps, < 1 more high-noise steps.
        cond_dropout: classifier-free guidance training (Ho & Salimans 2022; not in the paper): each row's
            utterance is replaced by the empty request (``CodeFusion.null_request``) with this probability, so
            the model also learns to denoise without one and a sampler can contrast the two
            (``DiffusionSampler(guidance=...)``). ``finetune`` only; 0 = off (the paper).
        min_snr_gamma: > 0 multiplies each row's term 1 by its min-SNR-gamma weight (Hang et al.
            2023, ``GaussianScheduler.min_snr_weight``); 0 = unweighted (the paper).
        chunked_head: compute the head's cross-entropy in row chunks, never holding the logits (same
            values and gradients; ``false`` uses the full-logits path, e.g. to compare).
    """

    task: Task = "finetune"
    denoise_weight: float = 1.0
    decoder_weight: float = 1.0
    ce_weight: float = 1.0
    pad_weight: float = 1.0
    clean_decode_fraction: float = 0.0
    cpd_mask_rate: float = 0.5
    cpd_collapse: bool = True
    mask_id: int = 2
    preview_steps: int = 20
    chunked_head: bool = True
    retrieval_k: int = 0
    timestep_power: float = 1.0
    min_snr_gamma: float = 0.0
    cond_dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("denoise_weight", "decoder_weight", "ce_weight", "pad_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.clean_decode_fraction <= 1.0:
            raise ValueError(f"clean_decode_fraction must be in [0, 1], got {self.clean_decode_fraction}")
        if not 0.0 <= self.cpd_mask_rate <= 1.0:
            raise ValueError(f"cpd_mask_rate must be in [0, 1], got {self.cpd_mask_rate}")
        if self.retrieval_k < 0:
            raise ValueError(f"retrieval_k must be >= 0, got {self.retrieval_k}")
        if self.retrieval_k and self.task != "finetune":
            raise ValueError(f"retrieval_k conditions the NL encoder: task must be finetune, not {self.task}")
        if self.timestep_power <= 0:
            raise ValueError(f"timestep_power must be > 0, got {self.timestep_power}")
        if self.min_snr_gamma < 0:
            raise ValueError(f"min_snr_gamma must be >= 0 (0 = off), got {self.min_snr_gamma}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.cond_dropout and self.task != "finetune":
            raise ValueError(f"cond_dropout drops the utterance: task must be finetune, not {self.task}")
        if self.preview_steps < 1:
            raise ValueError(f"preview_steps must be >= 1, got {self.preview_steps}")


def pad_code(
    code_ids: torch.Tensor, keep: torch.Tensor, length: int, pad_id: int, pad_weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad code (B, T) to (B, ``length``) and give per-position loss weights (B, length).

    ``keep`` (B, T) marks real tokens; everything else becomes ``pad_id`` with weight ``pad_weight``.
    """
    batch, width = code_ids.shape
    if width > length:
        raise ValueError(f"code batch is {width} tokens long but the model's code_length is {length}; truncate it")
    ids = torch.full((batch, length), pad_id, dtype=torch.long, device=code_ids.device)
    real = torch.zeros((batch, length), dtype=torch.bool, device=code_ids.device)
    ids[:, :width] = torch.where(keep.bool(), code_ids, pad_id)
    real[:, :width] = keep.bool()
    weights = torch.where(real, 1.0, pad_weight)
    return ids, weights


def drop_requests(
    ids: torch.Tensor, mask: torch.Tensor, rate: float, pad_id: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Utterance ids and mask (B, S) with each row made the empty request with probability ``rate``: all pad,
    only the first position visible, which encodes as :meth:`CodeFusion.null_request` does."""
    drop = (torch.rand(ids.shape[0], generator=generator, device=generator.device) < rate).to(ids.device)[:, None]
    first = torch.zeros_like(mask, dtype=torch.bool)
    first[:, 0] = True
    return torch.where(drop, pad_id, ids), torch.where(drop, first, mask.bool()).to(mask.dtype)


def _row_mean(per_pos: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean over positions per sequence, then mean over sequences: (B, N) -> scalar."""
    return ((per_pos * weights).sum(1) / weights.sum(1).clamp_min(1e-8)).mean()


def codefusion_loss(
    model: CodeFusion,
    scheduler: GaussianScheduler,
    code_ids: torch.Tensor,
    weights: torch.Tensor,
    enc: torch.Tensor,
    enc_mask: torch.Tensor | None,
    generator: torch.Generator,
    loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    chunked_head: bool = True,
    clean_fraction: float = 0.0,
    timestep_power: float = 1.0,
    min_snr_gamma: float = 0.0,
    ctx_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The three-term loss for one batch; see the module docstring.

    Args:
        model: the CodeFusion network.
        scheduler: the forward process (``add_noise``) matching ``model.cfg``.
        code_ids: (B, N) gold code, padded to the model's ``code_length``.
        weights: (B, N) per-position loss weights (see :func:`pad_code`).
        enc: (B, S, D) E(s), or the noise that replaces it.
        enc_mask: (B, S) True on real context positions, or None.
        generator: draws the timesteps and the noise.
        loss_weights: weights of the denoiser, decoder and cross-entropy terms.
        chunked_head: allow the chunked head loss (see :func:`nl2code.objectives.linear_ce.head_loss`).
        clean_fraction: share of rows whose decoder reads ``L(y)`` (``clean_decode_fraction``).
        timestep_power, min_snr_gamma: see :class:`CodeFusionLossConfig`.
        ctx_ids: (B, S) the context's token ids, for a model with a copy head (None: H alone scores).
    """
    B = code_ids.shape[0]
    x0 = model.embed_code(code_ids)  # (B, N, E)
    noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0)
    t = scheduler.sample_timesteps(B, generator, device=x0.device, power=timestep_power)
    x_t = scheduler.add_noise(x0, noise, t)
    bound = model.x0_bound()
    x0_prev = None
    # Self-conditioning: on half the batches N first estimates x_0 without gradient, then refines it.
    if model.cfg.self_condition and torch.rand((), generator=generator, device=generator.device) < 0.5:
        with torch.no_grad():
            x0_prev = scheduler.to_x0(model.denoise(x_t, t, enc, enc_mask), x_t, t, clip=bound).detach()
    coef = weights / weights.sum(1, keepdim=True).clamp_min(1e-8) / weights.shape[0]  # _row_mean as weights
    row_w = scheduler.min_snr_weight(t, min_snr_gamma).to(x0) if min_snr_gamma > 0 else None
    if model.cfg.score_interpolation:  # CDCD: term 1 is the cross-entropy of N's token scores
        scores = model.denoise_scores(x_t, t, enc, enc_mask, x0_prev=x0_prev)
        x0_hat = model.interpolate(scores)
        denoise, _ = logits_loss(scores, code_ids, coef if row_w is None else coef * row_w[:, None])
    else:
        out = model.denoise(x_t, t, enc, enc_mask, x0_prev=x0_prev)
        x0_hat = scheduler.to_x0(out, x_t, t, clip=bound)
        target = x0 if scheduler.prediction_type == "sample" else noise
        per_pos = (out - target).pow(2).mean(-1)
        denoise = _row_mean(per_pos if row_w is None else per_pos * row_w[:, None], weights)
    if model.decoder is not None:
        dec_in = x0_hat
        if clean_fraction > 0:
            clean = torch.rand(B, generator=generator, device=generator.device).to(x0.device) < clean_fraction
            dec_in = torch.where(clean[:, None, None], x0, x0_hat)
        copying = model.copies(ctx_ids)
        if copying:
            hidden, copy_logp = model.decode_logits(dec_in, enc, enc_mask, ctx_ids)
        else:
            hidden = model.decode(dec_in, enc, enc_mask)
        decoder = _row_mean((hidden - x0).pow(2).mean(-1), weights)
    else:  # GENIE: rounding loss on the gold embeddings; no decoder term
        hidden, copying = x0, False
        decoder = x0.new_zeros(())
    if copying:  # the copy mixture's log-probabilities (log_softmax leaves them unchanged)
        ce, pred = logits_loss(copy_logp, code_ids, coef)
    elif model.cfg.distance_head:  # not a plain linear layer: full logits (the vocabularies are small)
        ce, pred = logits_loss(model.logits(hidden), code_ids, coef)
    else:
        ce, pred = head_loss(model.head, hidden, code_ids, coef, chunked=chunked_head)
    w_den, w_dec, w_ce = loss_weights
    loss = w_den * denoise + w_dec * decoder + w_ce * ce
    with torch.no_grad():
        real = code_ids != model.cfg.pad_id
        correct = (pred == code_ids) & real
        metrics = {
            "denoise": denoise.detach(),
            "decoder": decoder.detach(),
            "ce": ce.detach(),
            "acc": correct.sum() / real.sum().clamp_min(1),
            "embed_norm": model.code_embed.weight.norm(dim=-1).mean(),
        }
    return loss, metrics


def cpd_inputs(
    code_ids: torch.Tensor,
    keep: torch.Tensor,
    groups: torch.Tensor,
    *,
    mask_id: int,
    pad_id: int,
    mask_rate: float,
    collapse: bool,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked-code encoder inputs (B, S) and keep-mask for CPD, redrawn every call.

    ``groups`` (B, T) holds each token's identifier/keyword occurrence number (0 = not maskable),
    aligned with ``code_ids``. One draw from ``generator`` seeds the per-row numpy masking, so the
    masks are reproducible from the generator's state alone.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    rng = np.random.default_rng(seed)
    rows = []
    for ids, k, g in zip(code_ids.tolist(), keep.tolist(), groups.tolist()):
        n = sum(k)
        ex = cpd_mask(ids[:n], groups_from_ids(g[:n]), mask_id, rng, mask_rate=mask_rate, collapse=collapse)
        rows.append(ex.input_ids or [pad_id])
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = True
    return out.to(code_ids.device), mask.to(code_ids.device)


class CodeFusionObjective(Objective):
    """``(model, batch, generator) -> (loss, metrics)`` for a :class:`CodeFusion` model.

    The batch carries code in ``input_ids``/``attention_mask`` and, per task, the utterance in
    ``extras["nl"]``/``extras["nl_mask"]`` (finetune) or occurrence numbers in
    ``extras["cpd_groups"]`` (cpd). The loss is a mean over sequences (``weight`` = batch size).
    """

    def __init__(self, cfg: CodeFusionLossConfig | None = None):
        self.cfg = cfg or CodeFusionLossConfig()
        self._schedulers: dict[object, GaussianScheduler] = {}

    def scheduler(self, model: CodeFusion) -> GaussianScheduler:
        if model.cfg not in self._schedulers:
            self._schedulers[model.cfg] = scheduler_for(model.cfg)
        return self._schedulers[model.cfg]

    def context(
        self, model: CodeFusion, batch: Batch, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """E(s), its mask and its token ids for this task (§5); unconditional: noise, no mask, no ids."""
        cfg, mcfg = self.cfg, model.cfg
        if cfg.task == "unconditional":
            shape = (len(batch), mcfg.max_nl_length, mcfg.d_model)
            noise = torch.randn(shape, generator=generator, device=generator.device).to(batch.input_ids.device)
            return noise, None, None
        if cfg.task == "cpd":
            if "cpd_groups" not in batch.extras:
                raise ValueError("CPD objective needs batch.extras['cpd_groups'] (see nl2code.data.cpd.group_ids)")
            ids, mask = cpd_inputs(
                batch.input_ids,
                batch.attention_mask,
                batch.extras["cpd_groups"],
                mask_id=cfg.mask_id,
                pad_id=mcfg.pad_id,
                mask_rate=cfg.cpd_mask_rate,
                collapse=cfg.cpd_collapse,
                generator=generator,
            )
            return model.encode(ids, mask), mask, ids
        if "nl" not in batch.extras:
            raise ValueError("finetune objective needs the utterance in batch.extras['nl']")
        ids, mask = batch.extras["nl"], batch.extras["nl_mask"]
        if cfg.cond_dropout:
            ids, mask = drop_requests(ids, mask, cfg.cond_dropout, mcfg.pad_id, generator)
        return model.encode(ids, mask), mask, ids

    def __call__(
        self, model: nn.Module, batch: Batch, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not isinstance(model, CodeFusion):
            raise TypeError(f"the codefusion objective needs a CodeFusion model, got {type(model).__name__}")
        mcfg = model.cfg
        code, weights = pad_code(
            batch.input_ids, batch.attention_mask, mcfg.code_length, mcfg.pad_id, self.cfg.pad_weight
        )
        enc, enc_mask, ctx_ids = self.context(model, batch, generator)
        loss_weights = (self.cfg.denoise_weight, self.cfg.decoder_weight, self.cfg.ce_weight)
        return codefusion_loss(
            model,
            self.scheduler(model),
            code,
            weights,
            enc,
            enc_mask,
            generator,
            loss_weights,
            self.cfg.chunked_head,
            self.cfg.clean_decode_fraction,
            self.cfg.timestep_power,
            self.cfg.min_snr_gamma,
            ctx_ids,
        )

    def example_transform(self, tokenizer: Any, data_cfg: Any) -> Callable[[Example, Any], Example] | None:
        """With ``retrieval_k > 0``: the utterance in ``extras["nl"]`` gets its retrieved commands in front."""
        if not self.cfg.retrieval_k:
            return None
        if data_cfg.format != "code_nl":
            raise ValueError(f"objective.retrieval_k needs data.format: code_nl, not {data_cfg.format}")
        from nl2code.data.retrieval import retriever_for

        return RetrievalContext(tokenizer, retriever_for(data_cfg), self.cfg.retrieval_k, data_cfg.max_len)

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
        """Top-1 sample per prompt (the utterance ids; ignored for ``unconditional``), few DDIM steps."""
        if not isinstance(model, CodeFusion):
            raise TypeError(f"the codefusion objective needs a CodeFusion model, got {type(model).__name__}")
        steps = min(self.cfg.preview_steps, model.cfg.num_timesteps)
        sampler = DiffusionSampler(model, num_steps=steps, eta=0.0, eos_id=eos_id)
        if self.cfg.task == "unconditional":
            out = sampler.generate(None, 1, generator, num_prompts=len(prompts))
        else:
            out = sampler.generate([p[: model.cfg.max_nl_length] for p in prompts], 1, generator)
        return [cands[0][:max_new_tokens] for cands in out.ids]


class RetrievalContext:
    """Row rewrite for CodeFusion: ``extras["nl"]`` -> ``cmd_1 \\n ... <eom> NL`` (leave-one-out,
    deterministic, cached per row); the code target is untouched."""

    def __init__(self, tok: Any, retriever: Any, k: int, length: int):
        self.tok, self.retriever, self.k, self.length = tok, retriever, k, length
        self._cache: dict[bytes, np.ndarray] = {}

    def __call__(self, ex: Example, rng: Any = None) -> Example:
        from nl2code.data.retrieval import rag_context

        nl_ids = ex.extras["nl"]
        key = nl_ids.tobytes() + b"|" + ex.input_ids.tobytes()
        if key not in self._cache:
            tok = self.tok
            nl = tok.decode(nl_ids.tolist())
            end = len(ex.input_ids) - 1 if ex.input_ids[-1] == tok.eos_id else len(ex.input_ids)
            own = self.retriever.row_of(nl, tok.decode(ex.input_ids[:end].tolist()))
            ids = rag_context(tok, self.retriever, nl, nl_ids.tolist(), self.k, self.length, exclude=own)
            self._cache[key] = np.array(ids, dtype=np.int64)
        return Example(ex.input_ids, ex.loss_mask, {**ex.extras, "nl": self._cache[key]})
