"""What the demo runs (:class:`DemoSettings`) and how it fails (:class:`DemoError`), shared by its steps."""

from __future__ import annotations

from dataclasses import dataclass

from nl2code.cli import CLIError
from nl2code.generation.diffusion import DEFAULT_STEPS

MODELS = ("codegen", "codefusion")


@dataclass(frozen=True)
class DemoSettings:
    """What the demo trains, generates and scores.

    Attributes:
        models: model configs to run, by file name in ``config_dir`` (``<name>.yaml``).
        max_functions: mine at most this many stdlib functions (None = all, ~6,000).
        heldout: held-out functions to generate for and score.
        heldout_max_lines: only held-out functions of at most this many code lines are used (both
            models have a fixed context; long references cannot be produced by either).
        nextword_rows: rows of the next-word task (at most ``nextword_per_function`` words from each
            test-split function of at most ``heldout_max_lines`` lines, in the held-out order).
        nextword_per_function: words scored per function in the next-word task.
        nextword_tokens: the AR model's token budget for one next word.
        n: candidates per prompt.
        ks: the k of top-k metrics and pass@k.
        temperature: sampling temperature of the AR model (diffusion draws fresh noise per candidate).
        top_p: nucleus mass of the AR model.
        max_new_tokens: AR generation budget.
        diffusion_steps: denoising steps of the diffusion model at inference (strided over its T).
        humaneval_problems: HumanEval problems to sample (None = all 164).
        vocab_size: tokenizer vocabulary.
        steps_scale: multiplies every stage's step counts (the --quick demo uses a small fraction).
        seed: seeds sampling (training seeds are in the configs).
        timeout_floor: minimum seconds per HumanEval program in the sandbox.
    """

    models: tuple[str, ...] = MODELS
    max_functions: int | None = None
    heldout: int = 100
    heldout_max_lines: int = 12
    nextword_rows: int = 400
    nextword_per_function: int = 4
    nextword_tokens: int = 6
    n: int = 5
    ks: tuple[int, ...] = (1, 3, 5)
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 128
    diffusion_steps: int = DEFAULT_STEPS  # the CLI's default too
    humaneval_problems: int | None = None
    vocab_size: int = 2048
    steps_scale: float = 1.0
    seed: int = 0
    timeout_floor: float = 3.0

    @classmethod
    def quick(cls) -> DemoSettings:
        """A one-to-two-minute run for tests and CI: same steps, tiny budgets."""
        return cls(
            max_functions=1500,
            heldout=12,
            nextword_rows=40,
            n=3,
            ks=(1, 3),
            max_new_tokens=48,
            diffusion_steps=5,
            humaneval_problems=16,
            vocab_size=1024,
            steps_scale=0.1,
        )

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("no models to run")
        if self.n < 1 or self.heldout < 1 or not self.ks or min(self.ks) < 1 or max(self.ks) > self.n:
            raise ValueError(f"need n >= 1, heldout >= 1 and 1 <= k <= n for every k, got n={self.n} ks={self.ks}")
        if not 0 < self.steps_scale <= 10:
            raise ValueError(f"steps_scale must be in (0, 10], got {self.steps_scale}")


class DemoError(CLIError):
    """A demo step failed; the message says which and how to continue."""


__all__ = ["MODELS", "DemoError", "DemoSettings"]
