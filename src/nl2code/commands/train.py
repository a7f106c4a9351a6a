"""``nl2code train CONFIG.yaml --run-dir DIR [--resume] [key=value ...]``: train a model from a config.

Also the entry under ``torchrun --nproc_per_node=N -m nl2code train ...`` (data parallel).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import typing
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
    from nl2code.data.config import DataConfig, TokenizerConfig
    from nl2code.rundir import CONFIG_FILE, GENERATION_FILE, TOKENIZER_DIR, WEIGHTS_FILE
    from nl2code.train.config import AdapterConfig, RunConfig, StageConfig, TrainConfig

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
        "stages inherit: a stage's train and data are the top-level sections with the stage's own keys on",
        "top (data.options merge key by key), so a top-level key reaches every stage that does not set it;",
        "override one stage by its name or index: stages.finetune.train.max_steps=100 (= stages[1]...).",
        "--print-config shows every stage's resolved keys and where each comes from. YAML's on/off/yes/no",
        "are read as the strings where an option's choices are strings (train.progress=off).",
    ]
    out += [
        "",
        f"outputs in DIR: {CONFIG_FILE} (resolved), {TOKENIZER_DIR}/, metrics.jsonl, samples.jsonl, tb/,",
        f"checkpoints/step_N/ (or stages/NAME/... per stage), the final {WEIGHTS_FILE} and {GENERATION_FILE}.",
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
    p.add_argument("--run-dir", "--run", dest="run_dir", required=True, metavar="DIR",
                   help="output directory of the run")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in DIR from its newest good checkpoint (starts fresh if none)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as YAML and exit without training")
    p.set_defaults(func=run_train)


# -- the command ---------------------------------------------------------------------------------


def packaged_fallback(path: str) -> str:
    """``configs/...`` that is not in the working directory: the package's copy, so the documented
    commands work from any directory after ``pip install``."""
    from pathlib import Path

    from nl2code.utils.resources import config_dir

    given = Path(path)
    if given.exists() or given.is_absolute() or given.parts[:1] != ("configs",):
        return path
    shipped = config_dir(*given.parts[1:])
    if not shipped.is_file():
        return path
    print(f"nl2code train: {path} is not here; using the packaged {shipped}", file=sys.stderr)
    return str(shipped)


def run_train(args: argparse.Namespace) -> int:
    """``nl2code train``: :func:`nl2code.train.run.run_training` on the config and overrides, as exit codes."""
    from nl2code.config import to_dict
    from nl2code.data.sources._io import SourceError
    from nl2code.rundir import CheckpointError
    from nl2code.train.config import describe_stages, load_run_config, shadowed_overrides
    from nl2code.train.loop import TrainingError
    from nl2code.train.run import run_training

    args.config = packaged_fallback(args.config)
    cfg, stages = load_run_config(args.config, args.overrides)
    for note in shadowed_overrides(cfg, args.overrides or []):
        print(f"nl2code train: note: {note}", file=sys.stderr)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        print(describe_stages(cfg, stages), end="")
        return 0
    try:
        status = run_training(cfg, args.run_dir, resume=args.resume, stages=stages, source=str(args.config))
    except SourceError as e:
        raise CLIError(str(e)) from e
    except (TrainingError, CheckpointError) as e:
        print(f"nl2code train: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_INTERRUPTED if status == "interrupted" else 0
