"""Gaussian diffusion in a continuous embedding space: forward noising and the reverse step.

The scheduler holds the schedule and nothing trainable; the objective calls :meth:`add_noise` and the
sampler calls :meth:`set_timesteps` + :meth:`step` (diffusers' split, layout.md rule 4). It works for
any tensor shape ``(B, ...)`` whose first dimension is the batch.

The reverse step is DDIM's generalised update (Song et al. 2021) with stochasticity ``eta``:
``eta = 1`` over all T steps is ancestral DDPM sampling with the posterior variance; ``eta = 0`` is
deterministic DDIM; both allow fewer inference steps than training steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from nl2code.diffusion.schedules import alphas_cumprod, spaced_timesteps

PredictionType = Literal["sample", "epsilon"]


@dataclass
class StepOutput:
    """Result of one reverse step.

    Attributes:
        prev_sample: ``x_{t'}``, the sample at the next (less noisy) timestep; ``x_0`` after the last.
        pred_original_sample: the ``x_0`` estimate the step was computed from.
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class GaussianScheduler:
    """Variance-preserving Gaussian diffusion with a named schedule.

    Args:
        num_train_timesteps: T; CodeFusion uses 1200 (codefusion.md §3).
        schedule: ``"sqrt"`` (CodeFusion/Diffusion-LM), ``"linear"`` or ``"cosine"``.
        prediction_type: what the network outputs: ``"sample"`` (``x_0``) or ``"epsilon"`` (the noise).
        eta: default reverse-step stochasticity (1 = DDPM, 0 = DDIM); :meth:`step` can override it.
            0 by default: on a trained Bash model, the reverse loop from gold noised to t = 400 kept
            54% of tokens with eta = 0 but 40% with eta = 1 (a single x^_0 prediction: 58%).
        clip_sample: default bound of :meth:`to_x0` (None = no clipping).
    """

    def __init__(
        self,
        num_train_timesteps: int = 1200,
        schedule: str = "sqrt",
        prediction_type: PredictionType = "sample",
        eta: float = 0.0,
        clip_sample: float | None = None,
    ):
        if prediction_type not in ("sample", "epsilon"):
            raise ValueError(f"prediction_type must be 'sample' or 'epsilon', got {prediction_type!r}")
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        self.num_train_timesteps = num_train_timesteps
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.eta = eta
        self.clip_sample = clip_sample
        self.alphas_cumprod = alphas_cumprod(schedule, num_train_timesteps)  # float64 (T,)
        # One extra entry so that index -1 ("clean", after the last step) reads alpha_bar = 1. Kept in
        # float32 for lookups: some accelerators (MPS) have no float64.
        self._alpha_bar_ext = torch.cat([self.alphas_cumprod, self.alphas_cumprod.new_ones(1)]).float()
        self.timesteps = spaced_timesteps(num_train_timesteps, num_train_timesteps)

    # -- helpers ------------------------------------------------------------------------------
    def _alpha_bar(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """``alpha_bar[t]`` shaped to broadcast against ``like`` (``(B,)`` t -> ``(B, 1, ...)``).

        ``t = -1`` means "clean" (alpha_bar = 1); it is the step after the last.
        """
        t = torch.as_tensor(t, device=like.device).long()
        if ((t < -1) | (t >= self.num_train_timesteps)).any():
            raise ValueError(f"timestep out of range -1..{self.num_train_timesteps - 1}: {t.tolist()}")
        out = self._alpha_bar_ext.to(like.device)[t].to(like.dtype)
        return out.reshape(out.shape + (1,) * (like.dim() - out.dim()))

    def sample_timesteps(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
        power: float = 1.0,
    ) -> torch.Tensor:
        """Training timesteps ``(B,)`` in ``0 .. T-1``: uniform (codefusion.md §10.11) at ``power = 1``,
        else ``floor(T u^power)`` for uniform ``u``: ``power > 1`` draws more low-noise steps, ``< 1``
        more high-noise ones (the density of ``t/T`` is ``s^(1/power - 1) / power``)."""
        if power <= 0:
            raise ValueError(f"power must be > 0, got {power}")
        gen_device = generator.device if generator is not None else None
        T = self.num_train_timesteps
        if power == 1.0:
            t = torch.randint(0, T, (batch_size,), generator=generator, device=gen_device)
        else:
            # float32: MPS has no float64, and 24 bits resolve T in the thousands
            u = torch.rand((batch_size,), generator=generator, device=gen_device)
            t = (T * u.pow(power)).long().clamp_(0, T - 1)
        return t.to(device) if device is not None else t

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio ``ab_t / (1 - ab_t)`` per timestep ``(B,)`` (float32)."""
        ab = self._alpha_bar(t, t.float())  # (B,): float32 like t.float()
        return ab / (1 - ab)

    def min_snr_weight(self, t: torch.Tensor, gamma: float) -> torch.Tensor:
        """Min-SNR-gamma loss weights ``(B,)`` (Hang et al. 2023) for this scheduler's regression target:
        ``min(SNR, gamma) / gamma`` on an ``x_0`` loss, ``min(SNR, gamma) / SNR`` on an ``eps`` loss
        (the same weighting of the ``x_0`` error up to the constant gamma). Both are at most 1."""
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        snr = self.snr(t)
        return snr.clamp(max=gamma) / (gamma if self.prediction_type == "sample" else snr)

    def to_x0(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int, clip: float | None = None
    ) -> torch.Tensor:
        """The ``x_0`` estimate implied by the network output (identity for ``"sample"``).

        ``clip``: clamp every entry of the estimate to ``[-clip, clip]`` (DDPM's ``clip_sample``),
        the default :attr:`clip_sample` when None. For ``"epsilon"`` it is what keeps the estimate
        finite-sized at large t: the sqrt schedule's last ``alpha_bar`` is 3.7e-7, so dividing by its
        root multiplies any error in ``eps^`` by 1,600 (an unclipped x^_0 MSE of ~3e6 at t = T-1).
        """
        if self.prediction_type == "sample":
            x0 = model_output
        else:
            ab = self._alpha_bar(t, x_t)
            x0 = (x_t - (1 - ab).sqrt() * model_output) / ab.sqrt()
        clip = self.clip_sample if clip is None else clip
        return x0 if clip is None else x0.clamp(-clip, clip)

    def to_epsilon(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """The noise implied by an ``x_0`` estimate: ``(x_t - sqrt(ab) x_0) / sqrt(1 - ab)``."""
        ab = self._alpha_bar(t, x_t)
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    # -- training -----------------------------------------------------------------------------
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``q(x_t | x_0)``: ``sqrt(ab_t) x_0 + sqrt(1 - ab_t) noise`` with per-example ``t`` ``(B,)``."""
        if noise.shape != x0.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} != x0 shape {tuple(x0.shape)}")
        ab = self._alpha_bar(t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    # -- sampling -----------------------------------------------------------------------------
    def set_timesteps(self, num_inference_steps: int) -> torch.Tensor:
        """Choose the reverse-process timesteps (descending); returns and stores them."""
        self.timesteps = spaced_timesteps(self.num_train_timesteps, num_inference_steps)
        return self.timesteps

    def previous_timestep(self, t: int) -> int:
        """The timestep after ``t`` in the current inference schedule; ``-1`` after the last."""
        hits = (self.timesteps == int(t)).nonzero()
        if hits.numel() == 0:
            raise ValueError(f"timestep {int(t)} is not in the inference schedule; call set_timesteps first")
        i = int(hits[0, 0])
        return int(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else -1

    def step(
        self,
        model_output: torch.Tensor,
        t: int,
        x_t: torch.Tensor,
        generator: torch.Generator | None = None,
        eta: float | None = None,
        x0_override: torch.Tensor | None = None,
    ) -> StepOutput:
        """One reverse step ``x_t -> x_{t'}`` where ``t'`` follows ``t`` in :attr:`timesteps`.

        Args:
            model_output: the network output at ``(x_t, t)``, interpreted per ``prediction_type``.
            t: the current timestep (one value for the whole batch).
            x_t: the current sample.
            generator: RNG for the fresh noise (only used when ``eta > 0``).
            eta: stochasticity; defaults to the scheduler's.
            x0_override: use this ``x_0`` estimate instead of the one implied by ``model_output``
                (clamping to embeddings, infilling); the noise direction is re-derived from it.
        """
        eta = self.eta if eta is None else eta
        t = int(t)
        prev = self.previous_timestep(t)
        x0 = self.to_x0(model_output, x_t, t) if x0_override is None else x0_override
        if prev < 0:
            return StepOutput(prev_sample=x0, pred_original_sample=x0)
        ab_t, ab_prev = self._alpha_bar(t, x_t), self._alpha_bar(prev, x_t)
        eps = self.to_epsilon(x0, x_t, t)
        # DDIM eq. 16: sigma^2 = eta^2 * (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev).
        var = eta**2 * (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)
        prev_sample = ab_prev.sqrt() * x0 + (1 - ab_prev - var).clamp_min(0).sqrt() * eps
        if eta > 0:
            gen_device = generator.device if generator is not None else x_t.device
            z = torch.randn(x_t.shape, generator=generator, device=gen_device, dtype=x_t.dtype)
            prev_sample = prev_sample + var.sqrt() * z.to(x_t.device)
        return StepOutput(prev_sample=prev_sample, pred_original_sample=x0)
