"""CodeFusion sampling: the reverse diffusion loop, candidate ranking and infilling (the run-directory
backend that uses it is :class:`nl2code.generation.diffusion.DiffusionGenerator`).

codefusion.md §3: ``x_T ~ N(0, I)`` of shape ``(n, E)``; the scheduler removes noise step by step with
the denoiser alone (no decoder inside the loop); after the last step D and H run once, each position
takes its argmax token and the program is cut at the first pad (or eos). Top-k candidates come from
k independent noise draws; they are ranked by the mean token log-probability of H up to and
including the terminator (the paper's ranking rule was not recovered, §3), never by the reference.

Ablations (§7 Table 4): ``rounding="grounding"`` replaces D+H by nearest-embedding rounding of the
final ``x_0``; ``"clamping"`` also snaps ``x^_0`` to its nearest embedding at every step (GENIE).
``"decoder_clamp"`` (ours, not in the paper) snaps ``x^_0`` at every step to the embeddings of D+H's
argmax tokens, so each step's input lies on the token manifold the denoiser was trained on; it keeps
briefly trained models from drifting as the number of steps grows (benchmarks/codefusion_results.md).
``"decoder_sample"`` (ours) snaps to tokens *drawn* from D+H's distribution instead, every step but the last
(argmax): the ancestral sampler of discrete diffusion (sample x_0 from the model, then x_t' given x_t and it).
At high noise D+H's per-position distributions are flat and their argmax is the most common token at every
position (Bash: ``find . - - - -``); a draw commits each position to one plausible token, for later, less
noisy steps to repair. Measured on Bash after an hour it does not: MBR top-1 35.8 at 20 steps against 41.0 for
``decoder_clamp`` and 43.5 for one step (benchmarks/results/bash_cf_dsample.md), so it is an option, not the default.
Unconditional models (pre-training task a) get fresh N(0, I) noise in place of ``E(s)`` at every step.

Classifier-free guidance (Ho & Salimans 2022; not in the paper), for a model trained with
``objective.cond_dropout``: the denoiser's output becomes ``u + w (c - u)``, ``c`` given the request and ``u``
given the empty request (``CodeFusion.null_request``), and D+H's token log-probabilities likewise (renormalised).
``w = 1`` is plain conditional sampling; ``w > 1`` pushes the sample towards what the request changes.
Measured on CPU-budget models it does not help: Bash CMS@1 40.2 at w = 1.5 vs 39.7 unguided, lower at w >= 2
(benchmarks/results/bash_cfg60.md); CF execution match level or lower at every w (cf_cfg20.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from nl2code.models.codefusion import CodeFusion, scheduler_for
from nl2code.sampling.guidance import check_weight, guided_logp

Rounding = Literal["decoder", "grounding", "clamping", "decoder_clamp", "decoder_sample"]
ROUNDINGS = ("decoder", "grounding", "clamping", "decoder_clamp", "decoder_sample")
SNAPPING = ("decoder_clamp", "decoder_sample")  # snap every step's x^_0 to tokens of D+H: they need a decoder
DECODED = ("decoder", *SNAPPING)  # the final x_0 becomes tokens through D+H
Score = Literal["final", "denoise"]
SCORES = ("final", "denoise")
SCORE_FRACTIONS = (0.25, 0.5, 0.75)  # of T: the noise levels a ``denoise`` score averages over


@dataclass
class DiffusionSamples:
    """Candidates per prompt, best first.

    Attributes:
        ids: ``ids[i][j]`` is candidate j of prompt i, cut before the first pad/eos.
        scores: the matching mean token log-probabilities (higher is better).
    """

    ids: list[list[list[int]]]
    scores: list[list[float]]


def infill_template(
    prefix: list[int],
    suffix: list[int],
    middle_length: int,
    code_length: int,
    pad_id: int,
    eos_id: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Layout ``prefix + middle + suffix (+ eos) + pads`` of length ``code_length``.

    Returns the template ids (N,) (the middle holds ``pad_id`` placeholders) and the bool mask (N,)
    of known positions: everything except the middle.
    """
    tail = list(suffix) + ([eos_id] if eos_id is not None else [])
    used = len(prefix) + middle_length + len(tail)
    if middle_length < 1 or used > code_length:
        raise ValueError(
            f"infill: prefix {len(prefix)} + middle {middle_length} + suffix {len(tail)} must fit code_length "
            f"{code_length} with a middle of at least 1"
        )
    ids = list(prefix) + [pad_id] * middle_length + tail + [pad_id] * (code_length - used)
    known = torch.ones(code_length, dtype=torch.bool)
    known[len(prefix) : len(prefix) + middle_length] = False
    return torch.tensor(ids, dtype=torch.long), known


def gumbel_argmax(scores: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per position (rows, N) from ``softmax(scores)`` (rows, N, V), by the Gumbel-max trick."""
    u = torch.rand(scores.shape, generator=generator, device=generator.device).to(scores.device)
    gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))
    return (scores.float() + gumbel).argmax(-1)


def default_rounding(model: CodeFusion) -> Rounding:
    """``decoder_clamp`` for a model with a decoder, ``grounding`` without one.

    Not the paper's ``decoder`` (no rounding inside the loop, §3): at the model sizes and budgets we
    train, the unclamped loop feeds the denoiser its own off-manifold estimates and loses against its
    own first step. On a tiny model trained on 64 Bash pairs, from pure noise (20 steps):
    ``decoder`` 73% of sequences right vs 91% for one x^_0 prediction; ``decoder_clamp`` 94%
    (top-1 exact 97% vs 80% with ``decoder``; ``tests/sampling/test_codefusion_learning.py``).
    """
    return "decoder_clamp" if model.decoder is not None else "grounding"


class DiffusionSampler:
    """Reverse-diffusion sampler for a :class:`CodeFusion` model.

    Args:
        model: the network (its config fixes T, the schedule and the prediction type).
        num_steps: inference steps; None = all T training steps (the paper's 1200); fewer are
            evenly spaced (DDIM-style).
        eta: reverse-step stochasticity, 1 = DDPM, 0 = deterministic DDIM (the default: the
            quality tests exercise it, and on Bash eta = 1 lost tokens against a single x^_0
            prediction, issue #18).
        rounding: ``decoder`` (CodeFusion), ``grounding``, ``clamping``, ``decoder_clamp`` or ``decoder_sample``
            (see the module docstring); None = :func:`default_rounding`.
        eos_id: a second terminator besides the model's pad id, or None.
        max_rows: most sequences denoised at once (prompts x candidates), to bound memory.
        score: how a prompt's candidates are ranked. ``final``: mean log-probability of D+H's tokens on the
            final ``x_0`` (after a multi-step loop ``x_0`` sits on the token manifold, so every candidate scores
            near 0 and the order is close to the draw order). ``denoise``: each candidate's own embeddings
            noised to each of :data:`SCORE_FRACTIONS` of T (the same noise for a prompt's candidates) and
            denoised in one step; the mean log-probability D+H give its tokens, averaged over the levels: a
            one-sample estimate of how well the model, given the request, reconstructs the candidate, the
            same for any number of steps.
        guidance: classifier-free guidance weight of the denoiser's output (see the module docstring); 1 = off.
            Needs a model trained with ``objective.cond_dropout`` (the generator checks).
        decoder_guidance: the same for D+H's token log-probabilities; None = ``guidance``.
    """

    def __init__(
        self,
        model: CodeFusion,
        *,
        num_steps: int | None = None,
        eta: float = 0.0,
        rounding: Rounding | None = None,
        eos_id: int | None = None,
        max_rows: int = 64,
        score: Score = "final",
        guidance: float = 1.0,
        decoder_guidance: float | None = None,
    ):
        decoder_guidance = guidance if decoder_guidance is None else decoder_guidance
        check_weight("guidance", guidance)
        check_weight("decoder_guidance", decoder_guidance)
        self.guidance, self.decoder_guidance = float(guidance), float(decoder_guidance)
        if score not in SCORES:
            raise ValueError(f"unknown score {score!r} (known: {', '.join(SCORES)})")
        if score == "denoise" and model.decoder is None:
            raise ValueError("the denoise score needs a model with a decoder (decoder_layers > 0)")
        self.score = score
        if rounding is None:
            rounding = default_rounding(model)
        if rounding not in ROUNDINGS:
            raise ValueError(f"unknown rounding {rounding!r} (known: {', '.join(ROUNDINGS)})")
        if rounding in SNAPPING and model.decoder is None:
            raise ValueError(f"{rounding} rounding needs a model with a decoder (decoder_layers > 0)")
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        self.model = model
        self.scheduler = scheduler_for(model.cfg, eta=eta)
        self.num_steps = num_steps or model.cfg.num_timesteps
        try:  # the scheduler's own rule (1 <= steps <= T), checked now rather than mid-request
            self.scheduler.set_timesteps(self.num_steps)
        except ValueError:
            raise ValueError(
                f"steps must be in 1..{model.cfg.num_timesteps} (the model's diffusion T is "
                f"{model.cfg.num_timesteps}), got {self.num_steps}"
            ) from None
        self.rounding = rounding
        self.stop_ids = {model.cfg.pad_id} | ({eos_id} if eos_id is not None else set())
        self.max_rows = max_rows

    # -- pieces ---------------------------------------------------------------------------------
    def _context(
        self, enc: torch.Tensor | None, rows: int, generator: torch.Generator, device: torch.device
    ) -> torch.Tensor:
        """E(s), or fresh N(0, I) noise of the utterance shape for an unconditional model."""
        if enc is not None:
            return enc
        shape = (rows, self.model.cfg.max_nl_length, self.model.cfg.d_model)
        return torch.randn(shape, generator=generator, device=generator.device).to(device)

    def null(self, enc: torch.Tensor | None) -> tuple[torch.Tensor, ...] | None:
        """The empty request's E, mask and ids for ``enc``'s rows when guidance is on; None otherwise."""
        if enc is None or (self.guidance == 1 and self.decoder_guidance == 1):
            return None
        ids, mask = self.model.null_request(enc.shape[0], enc.device)
        return self.model.encode(ids, mask), mask, ids

    def _denoise_out(self, x, t_vec, ctx, enc_mask, null, **prev) -> torch.Tensor:  # noqa: ANN001
        """N's output, guided against the empty request when ``null`` is given."""
        out = self.model.denoise(x, t_vec, ctx, enc_mask, **prev)
        if null is None or self.guidance == 1:
            return out
        uncond = self.model.denoise(x, t_vec, null[0], null[1], **prev)
        return uncond + self.guidance * (out - uncond)

    def _token_scores(self, x0, ctx, enc_mask, ctx_ids, null) -> torch.Tensor:  # noqa: ANN001
        """D+H's token scores (rows, N, V) on ``x0``; guided log-probabilities when ``null`` is given."""
        scores = self.model.decode_logits(x0, ctx, enc_mask, ctx_ids)[1]
        if null is None or self.decoder_guidance == 1:
            return scores
        uncond = self.model.decode_logits(x0, null[0], null[1], null[2])[1]
        return guided_logp(scores.float().log_softmax(-1), uncond, self.decoder_guidance)

    def _clamp(self, x0: torch.Tensor) -> torch.Tensor:
        return self.model.embed_code(self.model.nearest_tokens(x0))

    @torch.no_grad()
    def denoise(
        self,
        enc: torch.Tensor | None,
        enc_mask: torch.Tensor | None,
        rows: int,
        generator: torch.Generator,
        template: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
        x_start: torch.Tensor | None = None,
        t_start: int | None = None,
        ctx_ids: torch.Tensor | None = None,
        null: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        """Run the reverse loop from ``x_T ~ N(0, I)``; returns the final ``x_0`` (rows, N, E).

        ``template``/``known`` (N,): positions to hold at their embeddings (infilling).
        ``x_start``/``t_start``: start from this sample at timestep ``t_start`` instead of pure noise
        at ``T-1`` (SDEdit-style refinement; the diagnostics start from noised gold code). The
        schedule is then ``t_start`` followed by the inference timesteps below it.
        ``ctx_ids`` (rows, S): the utterance's token ids, for a model with a copy head.
        ``null``: :meth:`null` of ``enc``, for guided sampling.
        """
        model, sched, cfg = self.model, self.scheduler, self.model.cfg
        device = next(model.parameters()).device
        shape = (rows, cfg.code_length, cfg.diffusion_dim)
        sched.set_timesteps(self.num_steps)
        if x_start is not None:
            if t_start is None or not 0 <= t_start < cfg.num_timesteps:
                raise ValueError(f"x_start needs t_start in 0..{cfg.num_timesteps - 1}, got {t_start}")
            x = x_start.to(device)
            below = sched.timesteps[sched.timesteps < t_start]
            sched.timesteps = torch.cat([torch.tensor([t_start], dtype=torch.long), below])
        else:
            x = torch.randn(shape, generator=generator, device=generator.device).to(device)
        fixed = None
        if template is not None and known is not None:
            fixed = model.embed_code(template.to(device))[None].expand(shape)
            known = known.to(device)[None, :, None]
        x0 = None  # the previous step's estimate, for self-conditioned models
        last = int(sched.timesteps[-1])
        for t in sched.timesteps.tolist():
            t_vec = torch.full((rows,), t, dtype=torch.long, device=device)
            prev = {"x0_prev": x0} if cfg.self_condition else {}
            ctx = self._context(enc, rows, generator, device)
            out = self._denoise_out(x, t_vec, ctx, enc_mask, null, **prev)
            x0 = sched.to_x0(out, x, t, clip=model.x0_bound())
            if self.rounding == "clamping":
                x0 = self._clamp(x0)
            elif self.rounding in SNAPPING:
                scores = self._token_scores(x0, ctx, enc_mask, ctx_ids, null)
                draw = self.rounding == "decoder_sample" and t != last
                x0 = model.embed_code(gumbel_argmax(scores, generator) if draw else scores.argmax(-1))
            if fixed is not None:
                x0 = torch.where(known, fixed, x0)
            x = sched.step(out, t, x, generator=generator, x0_override=x0).prev_sample
        return x

    @torch.no_grad()
    def to_tokens(
        self,
        x0: torch.Tensor,
        enc: torch.Tensor | None,
        enc_mask: torch.Tensor | None,
        generator: torch.Generator,
        ctx_ids: torch.Tensor | None = None,
        null: tuple[torch.Tensor, ...] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Final ``x_0`` -> token ids (rows, N) and their log-probabilities (rows, N)."""
        model = self.model
        if self.rounding in DECODED:
            ctx = self._context(enc, x0.shape[0], generator, x0.device)
            logp = self._decoded_logp(x0, ctx, enc_mask, ctx_ids, null)
            ids = logp.argmax(-1)
        else:
            logp = model.logits(x0).float().log_softmax(-1)
            ids = model.nearest_tokens(x0)
        return ids, logp.gather(-1, ids[..., None])[..., 0]

    def _decoded_logp(
        self,
        x0: torch.Tensor,
        ctx: torch.Tensor,
        enc_mask: torch.Tensor | None,
        ctx_ids: torch.Tensor | None,
        null: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        """D+H's token log-probabilities (rows, N, V) on ``x0`` (guided when ``null`` is given)."""
        return self._token_scores(x0, ctx, enc_mask, ctx_ids, null).float().log_softmax(-1)

    @torch.no_grad()
    def denoise_logp(
        self,
        ids: torch.Tensor,
        enc: torch.Tensor | None,
        enc_mask: torch.Tensor | None,
        generator: torch.Generator,
        k: int,
        ctx_ids: torch.Tensor | None = None,
        null: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        """Per-token log-probabilities (rows, N) of ``ids`` (rows = prompts x ``k``, prompt-major) under the
        ``denoise`` score: their embeddings noised to each of :data:`SCORE_FRACTIONS` of T with one noise draw
        per prompt and level (shared by its k candidates, so their scores differ by the candidates alone),
        denoised in one step and decoded; the mean over the levels."""
        model, sched, cfg = self.model, self.scheduler, self.model.cfg
        device = ids.device
        clean = model.embed_code(ids)
        total = torch.zeros(ids.shape, dtype=torch.float32, device=device)
        shape = (ids.shape[0] // k, *clean.shape[1:])  # one noise draw per prompt
        for frac in SCORE_FRACTIONS:
            t = int(frac * (cfg.num_timesteps - 1))
            noise = torch.randn(shape, generator=generator, device=generator.device).to(device, clean.dtype)
            t_vec = torch.full((ids.shape[0],), t, dtype=torch.long, device=device)
            x_t = sched.add_noise(clean, noise.repeat_interleave(k, dim=0), t_vec)
            ctx = self._context(enc, ids.shape[0], generator, device)
            out = self._denoise_out(x_t, t_vec, ctx, enc_mask, null)
            x0 = sched.to_x0(out, x_t, t, clip=model.x0_bound())
            total += self._decoded_logp(x0, ctx, enc_mask, ctx_ids, null).gather(-1, ids[..., None])[..., 0]
        return total / len(SCORE_FRACTIONS)

    def _cut(self, ids: list[int]) -> int:
        """Index of the first terminator, or the length when there is none."""
        return next((i for i, tok in enumerate(ids) if tok in self.stop_ids), len(ids))

    def _rank(self, ids: torch.Tensor, logp: torch.Tensor, k: int) -> tuple[list, list]:
        """Cut and score (P*k, N) rows, then sort each prompt's k candidates by score."""
        out_ids, out_scores = [], []
        rows, lps = ids.tolist(), logp.tolist()
        for p in range(len(rows) // k):
            cands = []
            for j in range(p * k, (p + 1) * k):
                end = self._cut(rows[j])
                scored = lps[j][: min(end + 1, len(rows[j]))]  # include the terminator's probability
                cands.append((sum(scored) / len(scored), rows[j][:end]))
            cands.sort(key=lambda c: -c[0])  # stable: ties keep seed order
            out_ids.append([c[1] for c in cands])
            out_scores.append([c[0] for c in cands])
        return out_ids, out_scores

    # -- public API -----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self, prompts: list[list[int]] | None, num_samples: int, generator: torch.Generator, num_prompts: int = 1
    ) -> DiffusionSamples:
        """``num_samples`` ranked candidates for each prompt (token ids of the utterance).

        ``prompts=None`` samples unconditionally (``num_prompts`` groups). Deterministic given the
        generator's state: every random draw comes from it, in a fixed order.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        groups = prompts if prompts is not None else [None] * num_prompts
        per_chunk = max(1, self.max_rows // num_samples)
        result = DiffusionSamples(ids=[], scores=[])
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(groups), per_chunk):
                chunk = groups[start : start + per_chunk]
                enc, mask, ctx_ids = self._encode(chunk, num_samples)
                null = self.null(enc)
                rows = len(chunk) * num_samples
                x0 = self.denoise(enc, mask, rows, generator, ctx_ids=ctx_ids, null=null)
                ids, logp = self.to_tokens(x0, enc, mask, generator, ctx_ids, null)
                if self.score == "denoise":
                    logp = self.denoise_logp(ids, enc, mask, generator, num_samples, ctx_ids, null)
                chunk_ids, chunk_scores = self._rank(ids, logp, num_samples)
                result.ids.extend(chunk_ids)
                result.scores.extend(chunk_scores)
        finally:
            self.model.train(was_training)
        return result

    @torch.no_grad()
    def infill(
        self,
        prompt: list[int] | None,
        prefix: list[int],
        suffix: list[int],
        middle_length: int,
        num_samples: int,
        generator: torch.Generator,
        eos_id: int | None = None,
    ) -> DiffusionSamples:
        """Generate only the middle between ``prefix`` and ``suffix`` (diffusion infilling).

        The known positions (prefix, suffix, ``eos_id`` after it when given, and the trailing pads)
        are clamped to their embeddings at every step; the middle is cut at its first pad/eos. The
        returned candidates are ``prefix + middle + suffix``; scores average over the middle.
        """
        cfg = self.model.cfg
        template, known = infill_template(prefix, suffix, middle_length, cfg.code_length, cfg.pad_id, eos_id)
        was_training = self.model.training
        self.model.eval()
        try:
            enc, mask, ctx_ids = self._encode([prompt], num_samples)
            null = self.null(enc)
            x0 = self.denoise(
                enc, mask, num_samples, generator, template=template, known=known, ctx_ids=ctx_ids, null=null
            )
            ids, logp = self.to_tokens(x0, enc, mask, generator, ctx_ids, null)
        finally:
            self.model.train(was_training)
        lo, hi = len(prefix), len(prefix) + middle_length
        mid_ids, mid_scores = self._rank(ids[:, lo:hi], logp[:, lo:hi], num_samples)
        return DiffusionSamples(ids=[[list(prefix) + m + list(suffix) for m in mid_ids[0]]], scores=mid_scores)

    def _encode(self, prompts: list[list[int] | None], k: int) -> tuple[torch.Tensor | None, ...]:
        """Encode each prompt once and repeat it for its k candidates: E(s) (P*k, S, D), its mask and ids
        (P*k, S); all None for unconditional sampling."""
        if all(p is None for p in prompts):
            return None, None, None
        if any(p is None for p in prompts):
            raise ValueError("mix of conditional and unconditional prompts in one call")
        cfg = self.model.cfg
        device = next(self.model.parameters()).device
        width = max(1, max(len(p) for p in prompts))
        if width > cfg.max_nl_length:
            raise ValueError(f"prompt of {width} tokens exceeds the model's max_nl_length {cfg.max_nl_length}")
        ids = torch.full((len(prompts), width), cfg.pad_id, dtype=torch.long, device=device)
        mask = torch.zeros((len(prompts), width), dtype=torch.bool, device=device)
        for i, p in enumerate(prompts):
            ids[i, : len(p)] = torch.tensor(p, dtype=torch.long)
            mask[i, : len(p)] = True
        enc = self.model.encode(ids, mask)
        return enc.repeat_interleave(k, dim=0), mask.repeat_interleave(k, dim=0), ids.repeat_interleave(k, dim=0)
