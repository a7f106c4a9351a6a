"""The demo's steps and the resumable runner that executes them in one run directory.

Layout of the run directory (``runs/demo`` by default)::

    settings.json            the settings the run was started with (a re-run must match)
    steps/<step>.json        one marker per finished step: seconds taken and what it produced
    corpus/                  stats.json, heldout.jsonl (held-out functions the models are scored on)
    tokenizer/               the BPE tokenizer both models share
    configs/<model>.yaml     the training config as run (the YAML in configs/demo/ plus the demo's settings)
    <model>/                 the training run (nl2code train's run directory: metrics.jsonl, stages/, ...)
    samples/<model>/         heldout.jsonl and humaneval.jsonl (generated candidates)
    eval/<model>/            metrics.json (all scores) and humaneval/ (the harness's results and summary)
    report/index.html        the report, with its plots beside it; summary.md is the printed table

A step whose marker exists is skipped; training always runs with ``--resume``, so a run killed mid
training continues from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nl2code.cli import CLIError

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
    n: int = 5
    ks: tuple[int, ...] = (1, 3, 5)
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 128
    diffusion_steps: int = 10
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


@dataclass
class Step:
    name: str  # marker file name
    title: str  # what the progress line says
    run: Callable[[], dict[str, Any]]


class Runner:
    """Runs steps in order, skipping those with a marker; prints ``[i/N]`` progress lines."""

    def __init__(self, out: Path, say: Callable[[str], None] = print):
        self.out, self.say = out, say
        (out / "steps").mkdir(parents=True, exist_ok=True)

    def marker(self, name: str) -> Path:
        return self.out / "steps" / f"{name.replace(':', '-')}.json"

    def done(self, name: str) -> dict[str, Any] | None:
        p = self.marker(name)
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None

    def run(self, steps: list[Step], always: tuple[str, ...] = ()) -> None:
        for i, step in enumerate(steps, 1):
            previous = self.done(step.name)
            if previous is not None and step.name not in always:
                self.say(f"[{i}/{len(steps)}] {step.title}: done before ({previous['seconds']:.0f} s), skipping")
                continue
            self.say(f"[{i}/{len(steps)}] {step.title}")
            start, cpu = time.monotonic(), _cpu_seconds()
            info = step.run() or {}
            seconds = time.monotonic() - start
            # CPU time (this process and the child processes it waited for: trainings, sandboxes) says
            # what the step costs on an idle machine, whatever else was running.
            record = {
                "step": step.name,
                "title": step.title,
                "seconds": round(seconds, 2),
                "cpu_s": round(_cpu_seconds() - cpu, 2),
                **info,
            }
            tmp = self.marker(step.name).with_suffix(".tmp")
            tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
            os.replace(tmp, self.marker(step.name))
            self.say(f"      {step.title}: {seconds:.1f} s")


def _cpu_seconds() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def check_settings(out: Path, settings: DemoSettings) -> None:
    """Record the settings on the first run; refuse to resume a run made with other settings."""
    path = out / "settings.json"
    current = json.loads(json.dumps(dataclasses.asdict(settings)))  # tuples -> lists, as stored
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        # The model list may change: each model's artifacts stand alone, so one can be added later.
        changed = sorted(k for k in set(saved) | set(current) if k != "models" and saved.get(k) != current.get(k))
        if changed:
            raise DemoError(
                f"{path}: this run was started with other settings ({', '.join(changed)} differ); "
                "pass --force to start over, or use another --out"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")


def default_config_dir() -> Path:
    """``configs/demo`` of the source checkout this package was installed from."""
    return Path(__file__).resolve().parents[3] / "configs" / "demo"


def model_unavailable(name: str, config_dir: Path) -> str | None:
    """Why model ``name`` cannot run here (missing config, model kind or generator), or None."""
    import importlib

    from nl2code.api import BACKENDS
    from nl2code.config import ConfigError
    from nl2code.train.config import load_run_config

    path = config_dir / f"{name}.yaml"
    if not path.is_file():
        return f"no training config {path}"
    try:
        cfg, _ = load_run_config(path)
    except (ConfigError, ValueError) as e:
        return f"its config does not load ({e})"
    kind = getattr(type(cfg.model), "kind", None)
    if kind not in BACKENDS:
        return f"no generator is registered for model kind {kind!r} in nl2code.api.BACKENDS"
    module, _, cls = BACKENDS[kind].partition(":")
    try:
        getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        return f"its generator {BACKENDS[kind]} is not available ({type(e).__name__}: {e})"
    return None


def run_demo(
    out: Path,
    settings: DemoSettings,
    config_dir: Path | None = None,
    say: Callable[[str], None] = print,
    jobs: int = 2,
    isolation: str | None = None,
) -> Path:
    """Run (or resume) every step of the demo in ``out``; returns the report's path.

    ``jobs``: models trained at the same time, each in its own single-threaded process.
    ``isolation``: a sandbox level to run the HumanEval programs under although it is weaker than
    required (an explicit opt-in). Without it and without the required level (bubblewrap), HumanEval
    is not executed: the demo says so at the start and in the report, and scores the rest.
    """
    import torch

    threads = torch.get_num_threads()
    # Tiny models gain nothing from a second intra-op thread, and on a busy two-core machine two
    # threads that wait on each other make generation several times slower than one.
    torch.set_num_threads(1)
    try:
        return _run(out, settings, config_dir, say, jobs, isolation)
    finally:
        torch.set_num_threads(threads)


def sandbox_for_demo(isolation: str | None, say: Callable[[str], None]) -> tuple[str | None, str]:
    """(isolation label, "") when HumanEval programs may run, else (None, why not). A level named
    explicitly but not available here is an error; the required level missing is a loud note."""
    from nl2code.eval import sandbox

    try:
        label = sandbox.require(isolation)
    except sandbox.IsolationError as e:
        if isolation is not None:
            raise DemoError(str(e)) from None
        say(f"note: HumanEval pass@k will not run: {e}")
        return None, str(e)
    say(sandbox.describe(label))
    return label, ""


def evaluations_to_redo(runner: Runner, steps: list[Step]) -> list[str]:
    """Evaluate steps that finished without running HumanEval (no required isolation then): they run
    again once HumanEval's programs may run."""
    evaluations = [s.name for s in steps if s.name.startswith("evaluate:")]
    return [name for name in evaluations if (runner.done(name) or {}).get("humaneval_skipped")]


def _run(
    out: Path,
    settings: DemoSettings,
    config_dir: Path | None,
    say: Callable[[str], None],
    jobs: int,
    isolation: str | None = None,
) -> Path:
    from nl2code.demo import steps as S

    config_dir = config_dir or default_config_dir()
    if not config_dir.is_dir():
        raise DemoError(f"{config_dir}: no demo configs here (run from a source checkout or pass --configs)")
    label, skip = sandbox_for_demo(isolation, say)
    check_settings(out, settings)
    ctx = S.Context(out, settings, config_dir, say, label, skip)
    models, skipped = [], {}
    for name in settings.models:
        reason = model_unavailable(name, config_dir)
        if reason is None:
            models.append(name)
        else:
            skipped[name] = reason
            say(f"note: skipping model {name!r}: {reason}")
    if not models:
        raise DemoError("no model can run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    steps = [
        Step("corpus", "mine the NL->code corpus from the Python standard library", lambda: S.corpus(ctx)),
        Step("tokenizer", "train the BPE tokenizer", lambda: S.tokenizer(ctx)),
    ]
    together = " side by side" if jobs > 1 and len(models) > 1 else ""
    # Named by the model set, so a model added later (say, once its generator exists) gets trained
    # and sampled on the next run; models already done resume at once.
    group = "+".join(models)
    steps.append(
        Step(
            f"train:{group}",
            f"train {' and '.join(models)} (pre-train, then fine-tune){together}",
            lambda: S.train(ctx, models, jobs),
        )
    )
    steps.append(
        Step(
            f"generate:{group}",
            f"generate with {' and '.join(models)} (held-out functions, HumanEval){together}",
            lambda: S.generate(ctx, models, jobs),
        )
    )
    for name in models:
        steps.append(
            Step(
                f"evaluate:{name}",
                f"evaluate {name} (text metrics; HumanEval in the sandbox)",
                lambda name=name: S.evaluate(ctx, name),
            )
        )
    steps.append(Step("report", "write the report", lambda: S.report(ctx, models, skipped)))
    runner = Runner(out, say)
    runner.run(steps, always=("report", *([] if skip else evaluations_to_redo(runner, steps))))
    return out / "report" / "index.html"
