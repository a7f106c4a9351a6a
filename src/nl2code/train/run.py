"""Training as a library call: :func:`run_training` turns a run config into a finished run directory.

It trains (or copies) the tokenizer, fills the model's vocabulary size, builds the model, applies
``init_from`` and adapters, runs each stage through :func:`nl2code.train.loop.train`, merges the
adapters and saves the generation spec. ``nl2code train``, the demo and the tests all call it; under
``torchrun`` every rank calls it and rank 0 alone writes the shared files.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch

from nl2code import config as config_io
from nl2code.config import ConfigError
from nl2code.data.augment import copy_variants
from nl2code.data.config import DataConfig
from nl2code.data.pipeline import BatchIterator, eval_batches, load_splits, preview_set, tokenize
from nl2code.data.tokenizer import CodeTokenizer
from nl2code.errors import UserError
from nl2code.generation.spec import save_spec, spec_from_config
from nl2code.models import build_model
from nl2code.objectives import build_objective
from nl2code.rundir import RunDir
from nl2code.train import adapters
from nl2code.train import distributed as dist
from nl2code.train.config import RunConfig, Stage, resolve_stages
from nl2code.train.loop import EvalSpec, print_status, train
from nl2code.utils.device import resolve_precision, set_threads
from nl2code.utils.seed import derive_seed

Status = Literal["completed", "interrupted"]


class RunDirError(UserError):
    """The run directory does not fit the request (holds another run, or a different config on resume)."""


def _diff(a: Any, b: Any, key: str = "") -> list[str]:
    """Dotted keys where two plain config trees differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _diff(a.get(k), b.get(k), f"{key}.{k}" if key else k)]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _diff(x, y, f"{key}[{i}]")]
    return [] if a == b else [key]


def _check_same_run(run_dir: RunDir, resolved: dict, say: Callable[[str], None]) -> None:
    """On resume, the config may differ from the saved one only in train settings."""
    if not run_dir.config_file.exists():
        return
    try:  # through the typed loader, so a key added since the run started reads as its default
        before = config_io.to_dict(run_dir.load_config(RunConfig))
    except ConfigError:
        before = run_dir.read_config()
    changed = _diff(before, resolved)
    fatal = [k for k in changed if not (k.startswith("train.") or re.match(r"stages\[\d+\]\.train\.", k))]
    if fatal:
        raise RunDirError(
            f"{run_dir.config_file}: the run was started with a different {fatal[0]}; "
            "only train.* settings may change on --resume"
        )
    if changed:
        say(f"note: resuming with changed settings: {', '.join(changed)}")


class _Splits:
    """``load_splits`` memoised per data config: stages and the tokenizer share one read of a source."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple] = {}

    def __call__(self, data: DataConfig) -> tuple:
        key = json.dumps(config_io.to_dict(data), sort_keys=True, default=str)
        if key not in self._cache:
            self._cache[key] = load_splits(data)
        return self._cache[key]


def _tokenizer(
    cfg: RunConfig,
    stages: list[Stage],
    run_dir: RunDir,
    info: dist.DistInfo,
    say: Callable[[str], None],
    splits: _Splits,
) -> CodeTokenizer:
    """Load, copy or train the run's tokenizer into the run directory (rank 0 writes, the rest wait).

    A new tokenizer is trained on the NL and code of every stage's training records (each
    record once, even when stages share a source).
    """
    if info.is_main and not run_dir.has_tokenizer():
        if cfg.tokenizer.path is not None:
            try:
                run_dir.save_tokenizer(CodeTokenizer.load(cfg.tokenizer.path))
            except (FileNotFoundError, ValueError) as e:
                raise ConfigError(f"tokenizer.path: {e}") from e
        else:
            seen: set[str] = set()
            texts: list[str] = []
            for st in stages:
                for r in splits(st.data)[0]:
                    if r.task_id not in seen:
                        seen.add(r.task_id)
                        texts += [t for t in (r.nl, r.code) if t]
            say(f"training a {cfg.tokenizer.vocab_size}-token BPE tokenizer on {len(texts)} texts")
            run_dir.save_tokenizer(
                CodeTokenizer.train(
                    texts,
                    vocab_size=cfg.tokenizer.vocab_size,
                    min_frequency=cfg.tokenizer.min_frequency,
                    split_spaces=cfg.tokenizer.split_spaces,
                )
            )
    dist.barrier()
    return run_dir.load_tokenizer()


def run_training(
    cfg: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    stages: list[Stage] | None = None,
    source: str = "<config>",
) -> Status:
    """Train ``cfg`` into ``run_dir``; returns ``completed``, or ``interrupted`` (a checkpoint was saved).

    Args:
        cfg: the run config (e.g. from :func:`nl2code.train.config.load_run_config`).
        run_dir: the output directory; without ``resume`` it must not hold a run yet.
        resume: continue from the newest good checkpoint of each unfinished stage.
        stages: the resolved stages (default: :func:`resolve_stages` of ``cfg``).
        source: where ``cfg`` came from, for error messages.

    Raises:
        ConfigError, DataError, SourceError: bad config or data.
        RunDirError: ``run_dir`` holds another run, or on resume a config that differs beyond ``train.*``.
        TrainingError, CheckpointError: training failed; the last good checkpoint is kept.
    """
    stages = resolve_stages(cfg, source) if stages is None else stages
    try:
        info, device = dist.setup(cfg.train.device)
    except RuntimeError as e:
        raise ConfigError(f"{source}: train.device: {e}") from e
    try:
        return _run(cfg, stages, RunDir(run_dir), resume, source, info, device)
    finally:
        dist.teardown()


def _run(
    cfg: RunConfig,
    stages: list[Stage],
    run_dir: RunDir,
    resume: bool,
    source: str,
    info: dist.DistInfo,
    device: torch.device,
) -> Status:
    say = print_status if info.is_main else (lambda msg: None)
    set_threads(cfg.train.cpu_threads)
    if not resume and run_dir.holds_run():
        raise RunDirError(f"{run_dir} already holds a run; pass --resume to continue it, or use a new --run-dir")
    dist.barrier()  # every rank has looked before rank 0 writes anything
    if info.is_main:
        run_dir.path.mkdir(parents=True, exist_ok=True)
    splits = _Splits()
    tok = _tokenizer(cfg, stages, run_dir, info, say, splits)

    model_cfg = cfg.model
    vocab = getattr(model_cfg, "vocab_size", None)
    if vocab == 0:
        model_cfg = dataclasses.replace(model_cfg, vocab_size=tok.vocab_size)
    elif vocab is not None and vocab < tok.vocab_size:
        raise ConfigError(f"{source}: model.vocab_size {vocab} < tokenizer vocabulary {tok.vocab_size}")
    resolved = dataclasses.replace(cfg, model=model_cfg)
    if resume:
        _check_same_run(run_dir, config_io.to_dict(resolved), say)
    if info.is_main:
        run_dir.save_config(resolved)

    # Every rank builds identical initial weights from the seed (DDP also broadcasts rank 0's).
    init = torch.Generator().manual_seed(derive_seed(cfg.train.seed, 0))
    if adapters.streams_init(resolved):  # an NF4 base from init_from: never built in full precision
        with torch.device("meta"):
            model = build_model(model_cfg)
    else:
        model = build_model(model_cfg, generator=init)
    n_params = sum(p.numel() for p in model.parameters())
    model = adapters.prepare_model(model, resolved, source, say)  # init_from weights, LoRA/NF4
    dtype = resolve_precision(cfg.train.precision, device)
    say(
        f"model {model_cfg.kind}: {n_params / 1e6:.2f}M parameters; device {device}, "
        f"{str(dtype).removeprefix('torch.')}, {info.world_size} process(es)"
    )

    multi = len(stages) > 1
    for i, st in enumerate(stages):
        out = run_dir.stage(st.name) if multi else run_dir
        if multi and i > 0:
            # A stage starts from the previous stage's exported weights, whether or not that stage
            # ran in this process, so resumed and uninterrupted runs take the same path.
            run_dir.stage(stages[i - 1].name).load_weights(model, strict=True, device="cpu")
        if multi and resume and out.has_weights():
            say(f"stage '{st.name}' already finished; skipping")
            continue
        train_recs, eval_recs, notes = splits(st.data)
        if st.data.copy_augment and getattr(st.objective, "retrieval_k", 0):
            # a variant would retrieve its own original pair, whose values contradict it
            raise ConfigError(
                f"{source}: stage '{st.name}': data.copy_augment and objective.retrieval_k cannot combine"
            )
        if st.data.copy_augment:
            train_recs, shared = copy_variants(train_recs, st.data.copy_augment, seed=st.train.seed)
            notes = [
                *notes,
                f"copy augmentation: {st.data.copy_augment} variants of the {shared} pairs with shared values",
            ]
        train_ex, counts = tokenize(train_recs, tok, st.data)
        eval_ex, _ = tokenize(eval_recs, tok, st.data)
        for note in notes:
            say(f"data: {note}")
        say(
            f"[{st.name}] {counts['examples']} training examples "
            f"({counts['truncated']} truncated, {counts['dropped_overlong']} dropped as too long, "
            f"{counts['dropped_no_target']} without targets), {len(eval_ex)} eval examples"
        )
        pack_len = st.data.max_len if st.data.packing else None
        objective = build_objective(st.objective)
        try:
            batches = BatchIterator(
                train_ex,
                batch_size=st.train.batch_size,
                pad_id=tok.pad_id,
                seed=st.train.seed,
                shuffle=st.data.shuffle,
                pack_len=pack_len,
                rank=info.rank,
                world_size=info.world_size,
                transform=objective.example_transform(tok, st.data),
            )
        except ValueError as e:
            raise ConfigError(f"{source}: stage '{st.name}': {e}") from e

        def make_eval(examples: list = eval_ex, tc: Any = st.train, pl: int | None = pack_len) -> Any:
            return eval_batches(
                examples,
                batch_size=tc.batch_size,
                pad_id=tok.pad_id,
                limit=tc.eval_batches,
                pack_len=pl,
                rank=info.rank,
                world_size=info.world_size,
            )

        evaluation = EvalSpec(
            batches=make_eval if eval_ex else None,
            preview=preview_set(eval_recs or train_recs, tok, st.data, st.train.sample_count),
            decode=tok.decode,
            eos_id=tok.eos_id,
        )
        params = adapters.set_trainable(model, st.train.trainable, cfg.adapters is not None, source)
        say(f"[{st.name}] parameters: {params}")
        result = train(
            model,
            objective,
            batches,
            st.train,
            out.path,
            device=device,
            info=info,
            evaluation=evaluation,
            run_config=resolved,
            resume=resume,
            stage=st.name,
            log_dir=run_dir.path,
        )
        if result.status == "interrupted":
            return "interrupted"
    if multi and info.is_main:
        run_dir.copy_weights_from(run_dir.stage(stages[-1].name))
    if cfg.adapters is not None and info.is_main:
        adapters.finalize(model, cfg, run_dir, stages[-1].train.trainable)  # merged dense weights
    if info.is_main:
        save_spec(run_dir, spec_from_config(resolved))
    dist.barrier()
    say(f"done: {run_dir.weights_file}")
    return "completed"


__all__ = ["RunDirError", "Status", "run_training"]
