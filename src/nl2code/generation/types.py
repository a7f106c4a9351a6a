"""The types every generation backend and consumer shares: decoding settings, candidates, a loaded run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from nl2code.sampling.guidance import check_weight

if TYPE_CHECKING:
    from nl2code.data.tokenizer import CodeTokenizer
    from nl2code.generation.spec import GenerationSpec
    from nl2code.train.config import RunConfig


class RunError(ValueError):
    """A run directory that cannot be loaded; the message names the file."""


# Temperatures in (0, MIN_TEMPERATURE) decode as 0 (greedy): dividing logits by them overflows to
# inf/nan (1e-300 sampled nothing but padding), and any temperature this small is greedy in effect.
MIN_TEMPERATURE = 1e-5


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings shared by all backends (each ignores what does not apply to it).

    Attributes:
        n: candidates per prompt, returned best first.
        max_new_tokens: AR: tokens to generate; diffusion: ignored (the code length is fixed).
        temperature: AR sampling temperature; 0 = greedy (or beam search when num_beams > 1). Finite;
            values below :data:`MIN_TEMPERATURE` are stored as 0.
        top_k: AR: keep the k most likely tokens (0 = off).
        top_p: AR: nucleus sampling mass (1.0 = off).
        num_beams: AR beam search width (1 = off).
        stop: strings that end a candidate (cut before the stop string).
        seed: seed of all sampling noise; the same seed gives the same output.
        steps: diffusion: denoising steps at inference (None = the training T).
        rounding: diffusion: ``decoder`` (the paper), ``grounding``, ``clamping``, ``decoder_clamp`` or
            ``decoder_sample`` (see ``nl2code.sampling.diffusion``); None = the generator's default.
        score: diffusion: how candidates are ranked, ``final`` (D+H's confidence on the final ``x_0``) or
            ``denoise`` (each candidate re-noised and denoised in one step; see ``DiffusionSampler``); None =
            the generator's default.
        guidance: classifier-free guidance weight against the empty request (1 = off; needs a run trained
            with ``objective.cond_dropout``); see ``nl2code.sampling.diffusion`` and, for AR sampling,
            ``nl2code.sampling.autoregressive.sample``.
        decoder_guidance: diffusion: the same for D+H's token log-probabilities; None = ``guidance``.
        batch_size: prompts x candidates decoded together.
        draws: diffusion: ``x_T`` draws per prompt, of which the ``n`` best *distinct* candidates are
            returned (duplicates fill in only when fewer are distinct); 0 = ``n`` draws, all kept.
        valid_stop: AR beam search and greedy: a candidate may end only where its text is valid code
            in this language (``python``, ``bash``, ``cf``; constrained stopping in the spirit of
            PICARD, checked at the stop, not token by token). None = off.
    """

    n: int = 1
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    num_beams: int = 1
    stop: tuple[str, ...] = ()
    seed: int = 0
    steps: int | None = None
    rounding: str | None = None
    score: str | None = None
    guidance: float = 1.0
    decoder_guidance: float | None = None
    batch_size: int = 16
    valid_stop: str | None = None
    draws: int = 0

    def __post_init__(self) -> None:
        if self.n < 1 or self.max_new_tokens < 1 or self.num_beams < 1 or self.batch_size < 1:
            raise ValueError("n, max_new_tokens, num_beams and batch_size must be >= 1")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if self.draws < 0:
            raise ValueError(f"draws must be >= 0, got {self.draws}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:  # also refuses nan
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        check_weight("guidance", self.guidance)
        if self.decoder_guidance is not None:
            check_weight("decoder_guidance", self.decoder_guidance)
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.valid_stop is not None and self.num_beams == 1 and self.temperature >= MIN_TEMPERATURE:
            raise ValueError("valid_stop needs beam search or greedy decoding (temperature 0), not sampling")
        if 0 < self.temperature < MIN_TEMPERATURE:
            object.__setattr__(self, "temperature", 0.0)  # frozen: set once, here


@dataclass(frozen=True)
class Candidate:
    """One generated program and its score (mean token log-probability; higher is better)."""

    text: str
    score: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedRun:
    """Everything a backend needs from a run directory."""

    run_dir: Path
    config: RunConfig
    model: torch.nn.Module
    tokenizer: CodeTokenizer
    device: torch.device
    spec: GenerationSpec | None = None  # None: derived from ``config`` (see nl2code.generation.spec)


class Generator(Protocol):
    kind: str

    def generate(self, prompts: list[str], cfg: GenerationConfig) -> list[list[Candidate]]:
        """For each prompt, ``cfg.n`` candidates, best first."""
        ...

    def infill(self, prefix: str, suffix: str, cfg: GenerationConfig) -> list[Candidate]:
        """Candidates for the text between ``prefix`` and ``suffix``, best first."""
        ...


def check_config(generator: Generator, cfg: GenerationConfig) -> None:
    """Raise ValueError when ``generator`` cannot decode with ``cfg`` (e.g. diffusion ``steps`` above
    the model's T), before any work; backends without a ``check`` method take every valid config."""
    check = getattr(generator, "check", None)
    if check is not None:
        check(cfg)


__all__ = ["MIN_TEMPERATURE", "Candidate", "GenerationConfig", "Generator", "LoadedRun", "RunError", "check_config"]
