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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nl2code.demo.settings import DemoError, DemoSettings
from nl2code.utils.io import atomic_write


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
            atomic_write(self.marker(step.name), json.dumps(record, indent=2, default=str) + "\n")
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
    """``configs/demo`` shipped with the package (see :func:`nl2code.utils.resources.config_dir`)."""
    from nl2code.utils.resources import config_dir

    return config_dir("demo")


def model_unavailable(name: str, config_dir: Path) -> str | None:
    """Why model ``name`` cannot run here (missing config, model kind or generator), or None."""
    from nl2code.config import ConfigError
    from nl2code.generation import BACKENDS
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
        return f"no generator is registered for model kind {kind!r} in nl2code.generation.BACKENDS"
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
    from nl2code.utils.device import threads

    # Tiny models gain nothing from a second intra-op thread, and on a busy two-core machine two
    # threads that wait on each other make generation several times slower than one.
    with threads(1):
        return _run(out, settings, config_dir, say, jobs, isolation)


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
        Step("baselines", "score the constant and retrieval baselines", lambda: S.baselines(ctx)),
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
