"""Load a finished run directory and pick its generation backend by model kind."""

from __future__ import annotations

from pathlib import Path

import torch

from nl2code.config import ConfigError
from nl2code.generation.autoregressive import ARGenerator
from nl2code.generation.diffusion import DiffusionGenerator
from nl2code.generation.spec import load_spec
from nl2code.generation.types import Generator, LoadedRun, RunError
from nl2code.models import build_model
from nl2code.rundir import CheckpointError, RunDir
from nl2code.train.config import RunConfig

# model kind -> its backend (a class taking a LoadedRun); a new model family adds one line here
BACKENDS: dict[str, type] = {
    "codegen": ARGenerator,
    "codefusion": DiffusionGenerator,
}


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Load the resolved config, tokenizer, generation spec and final weights of a run directory.

    The weights file is verified first (:func:`nl2code.rundir.verify_weights`): a truncated or
    corrupt weights file is a :class:`RunError` naming it, not a traceback.
    """
    from safetensors import SafetensorError

    run = RunDir(run_dir)
    for p in run.missing():
        raise RunError(f"{p}: missing (is {run.path} a finished run directory?)")
    try:
        cfg = run.load_config(RunConfig)
        spec = load_spec(run, cfg)
    except ConfigError as e:
        raise RunError(str(e)) from e
    tokenizer = run.load_tokenizer()
    try:
        run.verify_weights()
    except CheckpointError as e:
        raise RunError(
            f"{e}; rewrite it from the run's last checkpoint with `nl2code train CONFIG.yaml "
            f"--run-dir {run.path} --resume`, or retrain"
        ) from e
    try:
        if getattr(type(cfg.model), "kind", None) == "codegen":
            from nl2code.hf.convert import load_weights

            model = load_weights(cfg.model, run.weights_file)  # streamed, in the stored dtype, no random init
        else:
            model = build_model(cfg.model)
            run.load_weights(model, strict=True, device="cpu")
    except (SafetensorError, RuntimeError, OSError, ValueError) as e:
        raise RunError(f"{run.weights_file}: cannot load weights: {e}") from e
    dev = torch.device(device)
    model.to(dev).eval()
    return LoadedRun(run.path, cfg, model, tokenizer, dev, spec)


def load_ensemble(run_dirs: list[str | Path], device: str | torch.device = "cpu") -> LoadedRun:
    """Finished AR runs decoded as one model, the mixture of their next-token distributions
    (:class:`nl2code.models.ensemble.Ensemble`): the first run's config, tokenizer and generation spec; every run
    must be a causal LM with the same tokenizer and prompt format (else a :class:`RunError` naming the run)."""
    from nl2code.models.ensemble import Ensemble

    runs = [load_run(d, device) for d in run_dirs]
    first, vocab = runs[0], runs[0].tokenizer.vocab()
    for r in runs:
        if getattr(type(r.config.model), "kind", None) != "codegen":
            raise RunError(f"{r.run_dir}: an ensemble decodes causal LMs; this run's model is not one")
        if r.tokenizer.vocab() != vocab:
            raise RunError(f"{r.run_dir}: its tokenizer differs from {first.run_dir}'s; an ensemble needs one")
        if r.spec != first.spec:
            raise RunError(f"{r.run_dir}: its generation spec (prompt format, stops) differs from {first.run_dir}'s")
    try:
        model = Ensemble([r.model for r in runs])
    except ValueError as e:
        raise RunError(f"{', '.join(str(r.run_dir) for r in runs)}: {e}") from e
    return LoadedRun(first.run_dir, first.config, model.eval(), first.tokenizer, first.device, first.spec)


def load_generator(
    run_dir: str | Path, device: str | torch.device = "cpu", ensemble: list[str | Path] | tuple = ()
) -> Generator:
    """The generation backend for the run directory's model kind; with ``ensemble`` (more AR run directories),
    the AR backend over all of them decoded as one model (:func:`load_ensemble`)."""
    if ensemble:
        return ARGenerator(load_ensemble([run_dir, *ensemble], device))
    run = load_run(run_dir, device)
    kind = getattr(type(run.config.model), "kind", None)
    if kind not in BACKENDS:
        raise RunError(f"{RunDir(run.run_dir).config_file}: no generator for model kind {kind!r}")
    return BACKENDS[kind](run)


__all__ = ["BACKENDS", "load_ensemble", "load_generator", "load_run"]
