"""The typed tree of a training run: ``model``, ``objective``, ``data``, ``tokenizer``, ``train``, ``stages``.

Loaded from YAML with dotted overrides (``train.max_steps=100``) by :func:`load_run_config`;
unknown keys and wrong types are errors naming the file and key. Every field carries a ``help``
string so ``nl2code train --help`` can document every option from this one place.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import nl2code.models  # noqa: F401  (RunConfig.model selects from its MODELS table)
import nl2code.objectives  # noqa: F401  (RunConfig.objective selects from its OBJECTIVES table)
from nl2code.config import ConfigError, from_dict, load, to_dict
from nl2code.config import option as _f
from nl2code.config import required as _required
from nl2code.data.config import DataConfig, TokenizerConfig
from nl2code.rundir import RunDir
from nl2code.utils.device import DeviceName, Precision


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, precision, logging and checkpointing of one training stage."""

    seed: int = _f(0, "seed of weights init, data order and objective noise")
    max_steps: int = _f(1000, "optimizer steps to train (bounds the run)")
    max_minutes: float = _f(
        0.0, "wall-clock budget of the stage's loop in minutes (0 = off): the stage stops when it is spent "
        "(or at max_steps) and the cosine decay follows the clock, so it still ends at min_lr"
    )
    batch_size: int = _f(32, "global micro-batch in examples, split evenly across data-parallel ranks")
    grad_accum: int = _f(1, "micro-batches per optimizer step (global batch = batch_size * grad_accum)")
    lr: float = _f(3e-4, "peak learning rate")
    min_lr: float = _f(3e-5, "learning rate at the end of the cosine decay")
    warmup_steps: int = _f(100, "linear warm-up steps from 0 to lr")
    weight_decay: float = _f(0.1, "AdamW decay, applied to matrices/embeddings only (dim >= 2)")
    betas: tuple[float, float] = _f((0.9, 0.95), "AdamW betas")
    eps: float = _f(1e-8, "AdamW epsilon")
    clip: float = _f(1.0, "max global gradient norm (0 = no clipping)")
    ema_decay: float = _f(0.0, "EMA of weights, e.g. 0.9999 for diffusion (0 = off); final weights are EMA")
    precision: Precision = _f(
        "auto",
        "auto (bf16 on CUDA that supports it, else fp32) | fast (also bf16 on a CPU with native bf16) | fp32 | bf16",
    )
    device: DeviceName = _f("auto", "auto | cpu | cuda | mps")
    cpu_threads: int = _f(0, "intra-op CPU threads (0 = PyTorch's default); tiny models are fastest on 1")
    eval_every: int = _f(500, "steps between evaluations on the held-out split (0 = never)")
    eval_batches: int = _f(20, "batches per evaluation")
    keep_best: bool = _f(
        False, "write the weights of the evaluation with the lowest held-out loss (the EMA's when ema_decay > 0) "
        "as the run's weights instead of the last ones: early stopping on the held-out rows; needs eval_every "
        "(checkpoints keep the last state, so --resume continues training)"
    )
    sample_every: int = _f(1000, "steps between sample previews (0 = never)")
    sample_count: int = _f(2, "prompts per sample preview")
    sample_tokens: int = _f(64, "max new tokens per preview sample")
    log_every: int = _f(10, "steps between metrics.jsonl / TensorBoard records")
    ckpt_every: int = _f(500, "steps between checkpoints (one is always written at the end)")
    keep_last: int = _f(3, "checkpoints kept in run_dir/checkpoints (older ones are deleted)")
    ddp_find_unused: bool = _f(
        False, "DDP: allow steps that leave some parameters without gradient (MoE routing, partial objectives)"
    )
    tensorboard: bool = _f(True, "also log to run_dir/tb with TensorBoard")
    progress: Literal["auto", "bar", "lines", "off"] = _f(
        "auto", "auto (bar on a terminal, else lines) | bar | lines (one per log step) | off"
    )
    trainable: Literal["auto", "router"] = _f(
        "auto", "auto: every parameter (only the adapters when `adapters` is set) | router: only the MoE "
        "routers (plus the adapters when set)"
    )

    def __post_init__(self) -> None:
        positive = ("max_steps", "batch_size", "grad_accum", "log_every", "keep_last", "eval_batches")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        counts = ("warmup_steps", "eval_every", "sample_every", "ckpt_every", "sample_count", "sample_tokens")
        for name in (*counts, "cpu_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need lr > 0 and 0 <= min_lr <= lr, got lr={self.lr} min_lr={self.min_lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.max_minutes < 0:
            raise ValueError(f"max_minutes must be >= 0, got {self.max_minutes}")
        if self.clip < 0 or self.weight_decay < 0:
            raise ValueError("clip and weight_decay must be >= 0")
        if self.keep_best and not self.eval_every:
            raise ValueError("keep_best chooses among evaluations: set eval_every > 0")


@dataclass(frozen=True)
class StageConfig:
    """One stage of a multi-stage run (e.g. pretrain, then finetune), each starting from the last."""

    name: str = _required("stage name (its checkpoints go to run_dir/stages/NAME)")
    data: dict[str, Any] = _f({}, "data keys overriding the top-level data section")
    objective: Any = _f(None, "objective for this stage (default: the top-level one)", registry="objective")
    train: dict[str, Any] = _f({}, "train keys overriding the top-level train section")


@dataclass(frozen=True)
class AdapterConfig:
    """Train low-rank adapters on a frozen base instead of the whole model (LoRA / QLoRA)."""

    kind: Literal["lora"] = _f("lora", "adapter kind")
    r: int = _f(8, "adapter rank")
    alpha: float = _f(16.0, "scale numerator: the update is (alpha / r) * B A")
    dropout: float = _f(0.0, "dropout on the adapter input")
    rslora: bool = _f(False, "scale by alpha / sqrt(r) (rsLoRA) instead of alpha / r")
    targets: list[str] = _f(
        ["qkv", "attn\\.out", "mlp\\.(gate|up|down)"],
        "regexes of the Linear layers to adapt (whole dotted name or a dotted suffix)",
    )
    quantize_base: Literal["nf4"] | None = _f(None, "hold the frozen base Linears in 4-bit NF4 (QLoRA-style)")
    double_quant: bool = _f(False, "NF4: also quantise the block scales to 8 bits")
    block_size: int = _f(64, "NF4: weights per absmax block")

    def __post_init__(self) -> None:
        if self.r < 1 or self.block_size < 2 or self.block_size % 2:
            raise ValueError(f"need r >= 1 and an even block_size >= 2, got r={self.r} block_size={self.block_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.targets:
            raise ValueError("targets must name at least one layer pattern")


@dataclass(frozen=True)
class RunConfig:
    """A complete, runnable training experiment."""

    model: Any = _f(None, "model architecture, selected by kind (e.g. codegen); default: init_from's",
                    registry="model")
    objective: Any = _f(None, "training objective, selected by kind (e.g. causal_lm); default: init_from's",
                        registry="objective")
    data: DataConfig = _f(DataConfig(), "training data")
    tokenizer: TokenizerConfig = _f(TokenizerConfig(), "tokenizer")
    train: TrainConfig = _f(TrainConfig(), "optimisation and bookkeeping")
    stages: list[StageConfig] = _f([], "optional list of stages; empty = one stage from the sections above")
    init_from: str | None = _f(None, "start from this run directory's final weights, tokenizer, model and objective")
    adapters: AdapterConfig | None = _f(None, "train only LoRA adapters on the frozen model (see adapters.*)")


@dataclass(frozen=True)
class Stage:
    """A resolved stage: the sections above with the stage's overrides applied."""

    name: str
    data: DataConfig
    objective: Any
    train: TrainConfig


def trained_data(cfg: RunConfig) -> DataConfig:
    """The data section of the run's last stage: the rows its final weights trained on (and held out)."""
    return resolve_stages(cfg)[-1].data


def resolve_stages(cfg: RunConfig, source: str = "<config>") -> list[Stage]:
    """The stages to run, in order; a config without ``stages`` is one stage named ``main``."""
    if not cfg.stages:
        return [Stage("main", cfg.data, cfg.objective, cfg.train)]
    names = [s.name for s in cfg.stages]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{source}: stages: duplicate stage name(s) {sorted(dup)}")
    out = []
    for i, st in enumerate(cfg.stages):
        if not st.name or "/" in st.name or st.name.startswith("."):
            raise ConfigError(f"{source}: stages[{i}].name: {st.name!r} is not a valid directory name")
        data = from_dict(DataConfig, _merge_data(to_dict(cfg.data), st.data), source, f"stages[{i}].data")
        train = from_dict(TrainConfig, {**to_dict(cfg.train), **st.train}, source, f"stages[{i}].train")
        out.append(Stage(st.name, data, st.objective or cfg.objective, train))
    return out


def _merge_data(top: dict[str, Any], stage: dict[str, Any]) -> dict[str, Any]:
    """A stage's data keys over the top-level ones; ``options`` merge key by key, so a stage that sets
    one source option keeps the others (``data.options.language=python`` reaches every stage)."""
    merged = {**top, **stage}
    if isinstance(top.get("options"), dict) and isinstance(stage.get("options"), dict):
        merged["options"] = {**top["options"], **stage["options"]}
    return merged


def shadowed_overrides(cfg: RunConfig, overrides: list[str]) -> list[str]:
    """Notes for top-level ``train.X=`` / ``data.X=`` overrides that a stage setting X itself hides."""
    from nl2code.config import parse_override

    notes = []
    for text in overrides:
        parts, _ = parse_override(text)
        if len(parts) != 2 or parts[0] not in ("train", "data"):
            continue
        for st in cfg.stages:
            if parts[1] in getattr(st, parts[0]):
                notes.append(
                    f"{text} does not reach stage {st.name!r}, which sets {parts[0]}.{parts[1]} itself "
                    f"(use stages.{st.name}.{parts[0]}.{parts[1]}=...)"
                )
    return notes


def describe_stages(cfg: RunConfig, stages: list[Stage]) -> str:
    """The resolved train/data settings of every stage as YAML comments, each key marked with where it
    comes from: the stage itself, or the top-level section it inherits (the stage's unset keys)."""
    lines = ["# resolved stages: each stage's train/data = the top-level section, then the stage's own keys"]
    for st, raw in zip(stages, cfg.stages or [None], strict=True):
        lines.append(f"# stage {st.name}:")
        for section in ("train", "data"):
            own = getattr(raw, section) if raw is not None else {}
            for key, value in to_dict(getattr(st, section)).items():
                origin = f"stages.{st.name}.{section}" if key in own else section
                lines.append(f"#   {section}.{key}: {value}   ({origin})")
    return "\n".join(lines) + "\n"


def load_run_config(path: str | Path, overrides: list[str] | None = None) -> tuple[RunConfig, list[Stage]]:
    """Load and validate a run config (and its stages) from YAML plus dotted overrides."""
    cfg = resolve_encoder_init(resolve_init_from(load(RunConfig, path, overrides), str(path)), str(path))
    return cfg, resolve_stages(cfg, str(path))


def resolve_encoder_init(cfg: RunConfig, source: str = "<config>") -> RunConfig:
    """Fill ``model.t5_encoder`` from the checkpoint ``model.encoder_init`` names (CodeFusion)."""
    model = cfg.model
    if getattr(model, "encoder_init", None) is None or model.t5_encoder is not None:
        return cfg
    from nl2code.hf.t5 import read_config

    try:
        return replace(cfg, model=replace(model, t5_encoder=read_config(model.encoder_init)))
    except ValueError as e:
        raise ConfigError(f"{source}: model.encoder_init: {e}") from None


def resolve_init_from(cfg: RunConfig, source: str = "<config>") -> RunConfig:
    """Fill ``model``, ``objective`` and ``tokenizer.path`` from ``init_from``'s run where unset."""
    if cfg.init_from is None:
        for name in ("model", "objective"):
            if getattr(cfg, name) is None:
                raise ConfigError(f"{source}: missing required key '{name}' (or set init_from: RUN_DIR)")
        return cfg
    init = RunDir(cfg.init_from)
    for missing in init.missing():
        raise ConfigError(f"{source}: init_from: {missing} is missing (not a finished run directory)")
    base = init.load_config(RunConfig)
    tokenizer = cfg.tokenizer
    if tokenizer.path is None:
        tokenizer = replace(tokenizer, path=str(init.tokenizer_dir))
    return replace(cfg, model=cfg.model or base.model, objective=cfg.objective or base.objective,
                   tokenizer=tokenizer)
