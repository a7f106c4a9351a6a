"""``nl2code train CONFIG.yaml --run-dir DIR [--resume] [key=value ...]``: train a model from a config.

Also the entry under ``torchrun --nproc_per_node=N -m nl2code train ...`` (data parallel).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import sys
import typing
from pathlib import Path
from typing import Any

from nl2code.cli import CLIError

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


# -- help text generated from the config dataclasses ----------------------------------------------


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    if typing.get_origin(tp) is typing.Literal:
        return "|".join(str(a) for a in args)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return " | ".join(_type_name(a) for a in rest) + " or null"
    return getattr(tp, "__name__", str(tp)) if not args else str(tp).replace("typing.", "")


def _attribute_docs(cls: type) -> dict[str, str]:
    """``name: text`` entries of the ``Attributes:`` section of a config class docstring."""
    docs: dict[str, str] = {}
    lines = (cls.__doc__ or "").splitlines()
    if not any(line.strip() == "Attributes:" for line in lines):
        return docs
    start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    current = None
    for line in lines[start + 1 :]:
        m = re.match(r"^\s{4,8}(\w+): (.*)$", line)
        if m and m.group(1) in {f.name for f in dataclasses.fields(cls)}:
            current = m.group(1)
            docs[current] = m.group(2).strip()
        elif current and line.strip():
            docs[current] += " " + line.strip()
        elif not line.strip():
            current = None
    return docs


def _describe(cls: type, prefix: str) -> list[str]:
    hints = typing.get_type_hints(cls)
    attr_docs = _attribute_docs(cls)
    lines = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            continue
        helptext = f.metadata.get("help") or attr_docs.get(f.name, "")
        if f.metadata.get("registry"):
            lines.append(f"  {prefix}{f.name} (mapping with a kind, default null): {helptext}")
            continue
        if f.default is not dataclasses.MISSING:
            default = json.dumps(f.default if not isinstance(f.default, tuple) else list(f.default))
        elif f.default_factory is not dataclasses.MISSING:
            default = json.dumps(f.default_factory())
        else:
            default = "required"
        lines.append(f"  {prefix}{f.name} ({_type_name(hints[f.name])}, default {default})"
                     + (f": {helptext}" if helptext else ""))
    return lines


def options_epilog() -> str:
    """Every config key ``key=value`` overrides accept, with type, default and meaning."""
    from nl2code.config import registry_kinds
    from nl2code.train.config import AdapterConfig, DataConfig, RunConfig, StageConfig, TokenizerConfig, TrainConfig

    out = ["config keys (set in CONFIG.yaml or override as key=value, e.g. train.max_steps=200):"]
    out += [" top level:", *_describe(RunConfig, "")]
    sections = (("train", TrainConfig), ("data", DataConfig), ("tokenizer", TokenizerConfig))
    for name, cls in (*sections, ("adapters", AdapterConfig)):
        out += [f" {name}:", *_describe(cls, f"{name}.")]
    for registry in ("model", "objective"):
        for kind, cls in sorted(registry_kinds(registry).items()):
            out += [f" {registry} (kind: {kind}):", *_describe(cls, f"{registry}.")]
    out += [" stages (optional list; each stage starts from the previous stage's final weights):",
            *_describe(StageConfig, "stages[i].")]
    out += [
        "",
        "outputs in DIR: config.yaml (resolved), tokenizer/, metrics.jsonl, samples.jsonl, tb/,",
        "checkpoints/step_N/ (or stages/NAME/... per stage) and the final model.safetensors.",
        "distributed: torchrun --nproc_per_node=N -m nl2code train CONFIG --run-dir DIR",
        "(gloo on CPU, nccl on CUDA; train.batch_size is the global micro-batch).",
        "exit status: 0 done, 1 training failed (e.g. non-finite loss), 2 bad input, 130 interrupted",
        "(a checkpoint was saved; continue with --resume).",
    ]
    return "\n".join(out)


class _OverridesAnywhere(argparse.ArgumentParser):
    """Collects ``key=value`` overrides that follow options too (``CONFIG --run-dir DIR a=1``).

    Plain argparse fills a ``nargs="*"`` positional from the first run of positionals only and
    rejects later ones as unrecognised (bpo-15112), so those are moved into ``overrides`` here.
    """

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        ns, extras = super().parse_known_args(args, namespace)
        rest = []
        for arg in extras:
            if "=" in arg and not arg.startswith("-"):
                ns.overrides = [*(ns.overrides or []), arg]
            else:
                rest.append(arg)
        return ns, rest


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a YAML config (resumable, data-parallel under torchrun)",
        description="Train the model of CONFIG.yaml with its objective on its data, writing logs, "
        "checkpoints and the final weights into --run-dir. Killed runs continue exactly with --resume.",
        epilog=options_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.__class__ = _OverridesAnywhere  # the subparsers action builds plain parsers; see the class
    p.add_argument("config", metavar="CONFIG.yaml", help="run config (see configs/smoke/ for small examples)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted config overrides, e.g. train.max_steps=200 model.d_model=128")
    p.add_argument("--run-dir", required=True, metavar="DIR", help="output directory of the run")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in DIR from its newest good checkpoint (starts fresh if none)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as YAML and exit without training")
    p.set_defaults(func=run_train)


# -- the command ----------------------------------------------------------------------------------


def _diff(a: Any, b: Any, key: str = "") -> list[str]:
    """Dotted keys where two plain config trees differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _diff(a.get(k), b.get(k), f"{key}.{k}" if key else k)]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _diff(x, y, f"{key}[{i}]")]
    return [] if a == b else [key]


def _check_fresh(run_dir: Path) -> None:
    """Without --resume, refuse to write into a directory that already holds a run."""
    names = ("config.yaml", "checkpoints", "stages", "model.safetensors")
    if any((run_dir / name).exists() for name in names):
        raise CLIError(f"{run_dir} already holds a run; pass --resume to continue it, or use a new --run-dir")


def _check_same_run(run_dir: Path, resolved: dict, say: Any) -> None:
    """On --resume, the config may differ from the saved one only in train settings."""
    from nl2code import config as config_io
    from nl2code.train.config import RunConfig

    saved = run_dir / "config.yaml"
    if not saved.exists():
        return
    try:  # through the typed loader, so a key added since the run started reads as its default
        before = config_io.to_dict(config_io.load(RunConfig, saved))
    except config_io.ConfigError:
        before = config_io.read_yaml(saved)
    changed = _diff(before, resolved)
    fatal = [k for k in changed if not (k.startswith("train.") or re.match(r"stages\[\d+\]\.train\.", k))]
    if fatal:
        raise CLIError(f"{saved}: the run was started with a different {fatal[0]}; "
                       "only train.* settings may change on --resume")
    if changed:
        say(f"note: resuming with changed settings: {', '.join(changed)}")


class _Splits:
    """``load_splits`` memoised per data config: stages and the tokenizer share one read of a source."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple] = {}

    def __call__(self, data: Any) -> tuple:
        from nl2code.config import to_dict
        from nl2code.data.pipeline import load_splits

        key = json.dumps(to_dict(data), sort_keys=True, default=str)
        if key not in self._cache:
            self._cache[key] = load_splits(data)
        return self._cache[key]


def _tokenizer(cfg: Any, stages: list, run_dir: Path, info: Any, say: Any, splits: _Splits) -> Any:
    """Load, copy or train the run's tokenizer into DIR/tokenizer (rank 0 writes, the rest wait).

    A new tokenizer is trained on the NL and code of every stage's training records (each
    record once, even when stages share a source).
    """
    from nl2code.data.tokenizer import CodeTokenizer
    from nl2code.train import distributed as dist

    tok_dir = run_dir / "tokenizer"
    if info.is_main and not (tok_dir / "tokenizer.json").is_file():
        if cfg.tokenizer.path is not None:
            try:
                CodeTokenizer.load(cfg.tokenizer.path).save(tok_dir)
            except (FileNotFoundError, ValueError) as e:
                raise CLIError(f"tokenizer.path: {e}") from e
        else:
            seen: set[str] = set()
            texts: list[str] = []
            for st in stages:
                for r in splits(st.data)[0]:
                    if r.task_id not in seen:
                        seen.add(r.task_id)
                        texts += [t for t in (r.nl, r.code) if t]
            say(f"training a {cfg.tokenizer.vocab_size}-token BPE tokenizer on {len(texts)} texts")
            CodeTokenizer.train(texts, vocab_size=cfg.tokenizer.vocab_size,
                                min_frequency=cfg.tokenizer.min_frequency).save(tok_dir)
    dist.barrier()
    return CodeTokenizer.load(tok_dir)


def run_train(args: argparse.Namespace) -> int:
    from nl2code.config import ConfigError, to_dict
    from nl2code.data.sources._io import SourceError
    from nl2code.train import distributed as dist
    from nl2code.train.checkpoint import CheckpointError
    from nl2code.train.config import load_run_config
    from nl2code.train.loop import TrainingError

    cfg, stages = load_run_config(args.config, args.overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    try:
        info, device = dist.setup(cfg.train.device)
    except RuntimeError as e:
        raise ConfigError(f"{args.config}: train.device: {e}") from e
    try:
        return _run(args, cfg, stages, info, device)
    except SourceError as e:
        raise CLIError(str(e)) from e
    except (TrainingError, CheckpointError) as e:
        print(f"nl2code train: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        dist.teardown()


def _run(args: argparse.Namespace, cfg: Any, stages: list, info: Any, device: Any) -> int:
    import torch

    from nl2code import config as config_io
    from nl2code.config import ConfigError
    from nl2code.data.pipeline import BatchIterator, eval_batches, preview_set, tokenize
    from nl2code.models import build_model
    from nl2code.objectives import build_objective
    from nl2code.train import adapters
    from nl2code.train import distributed as dist
    from nl2code.train.loop import EvalSpec, print_status, train
    from nl2code.utils.device import resolve_precision
    from nl2code.utils.seed import derive_seed

    say = print_status if info.is_main else (lambda msg: None)
    if cfg.train.cpu_threads:
        torch.set_num_threads(cfg.train.cpu_threads)
    run_dir = Path(args.run_dir)
    if not args.resume:
        _check_fresh(run_dir)
    dist.barrier()  # every rank has looked before rank 0 writes anything
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    splits = _Splits()
    tok = _tokenizer(cfg, stages, run_dir, info, say, splits)

    model_cfg = cfg.model
    vocab = getattr(model_cfg, "vocab_size", None)
    if vocab == 0:
        model_cfg = dataclasses.replace(model_cfg, vocab_size=tok.vocab_size)
    elif vocab is not None and vocab < tok.vocab_size:
        raise ConfigError(f"{args.config}: model.vocab_size {vocab} < tokenizer vocabulary {tok.vocab_size}")
    resolved = dataclasses.replace(cfg, model=model_cfg)
    if args.resume:
        _check_same_run(run_dir, config_io.to_dict(resolved), say)
    if info.is_main:
        config_io.save(resolved, run_dir / "config.yaml")

    # Every rank builds identical initial weights from the seed (DDP also broadcasts rank 0's).
    init = torch.Generator().manual_seed(derive_seed(cfg.train.seed, 0))
    model = build_model(model_cfg, generator=init)
    n_params = sum(p.numel() for p in model.parameters())
    model = adapters.prepare_model(model, cfg, str(args.config), say)  # init_from weights, LoRA/NF4
    dtype = resolve_precision(cfg.train.precision, device)
    say(f"model {model_cfg.kind}: {n_params / 1e6:.2f}M parameters; device {device}, "
        f"{str(dtype).removeprefix('torch.')}, {info.world_size} process(es)")

    for i, st in enumerate(stages):
        multi = len(stages) > 1
        out_dir = run_dir / "stages" / st.name if multi else run_dir
        if multi and i > 0:
            # A stage starts from the previous stage's exported weights, whether or not that stage
            # ran in this process, so resumed and uninterrupted runs take the same path.
            from safetensors.torch import load_model

            load_model(model, str(run_dir / "stages" / stages[i - 1].name / "model.safetensors"))
        if multi and args.resume and (out_dir / "model.safetensors").is_file():
            say(f"stage '{st.name}' already finished; skipping")
            continue
        train_recs, eval_recs, notes = splits(st.data)
        train_ex, counts = tokenize(train_recs, tok, st.data)
        eval_ex, _ = tokenize(eval_recs, tok, st.data)
        for note in notes:
            say(f"data: {note}")
        say(f"[{st.name}] {counts['examples']} training examples "
            f"({counts['truncated']} truncated, {counts['dropped_overlong']} dropped as too long, "
            f"{counts['dropped_no_target']} without targets), {len(eval_ex)} eval examples")
        pack_len = st.data.max_len if st.data.packing else None
        objective = build_objective(st.objective)
        try:
            batches = BatchIterator(train_ex, batch_size=st.train.batch_size, pad_id=tok.pad_id,
                                    seed=st.train.seed, shuffle=st.data.shuffle, pack_len=pack_len,
                                    rank=info.rank, world_size=info.world_size,
                                    transform=objective.example_transform(tok, st.data))
        except ValueError as e:
            raise ConfigError(f"{args.config}: stage '{st.name}': {e}") from e

        def make_eval(examples: list = eval_ex, tc: Any = st.train, pl: int | None = pack_len) -> Any:
            return eval_batches(examples, batch_size=tc.batch_size, pad_id=tok.pad_id, limit=tc.eval_batches,
                                pack_len=pl, rank=info.rank, world_size=info.world_size)

        evaluation = EvalSpec(
            batches=make_eval if eval_ex else None,
            preview=preview_set(eval_recs or train_recs, tok, st.data, st.train.sample_count),
            decode=tok.decode,
            eos_id=tok.eos_id,
        )
        params = adapters.set_trainable(model, st.train.trainable, cfg.adapters is not None, str(args.config))
        say(f"[{st.name}] parameters: {params}")
        result = train(model, objective, batches, st.train, out_dir, device=device,
                       info=info, evaluation=evaluation, run_config=resolved, resume=args.resume,
                       stage=st.name, log_dir=run_dir)
        if result.status == "interrupted":
            return EXIT_INTERRUPTED
    if len(stages) > 1 and info.is_main:
        final = run_dir / "stages" / stages[-1].name / "model.safetensors"
        tmp = run_dir / ".model.safetensors.tmp"
        shutil.copyfile(final, tmp)
        tmp.replace(run_dir / "model.safetensors")
    if cfg.adapters is not None and info.is_main:
        adapters.finalize(model, cfg, run_dir, stages[-1].train.trainable)  # merged dense model.safetensors
    dist.barrier()
    say(f"done: {run_dir / 'model.safetensors'}")
    return 0
