"""``nl2code hf export|import``: convert between run directories and Hugging Face LLaMA checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from nl2code.cli import CLIError


def add_parser(sub: argparse._SubParsersAction) -> None:
    from nl2code.models.hf_export import FILES

    p = sub.add_parser(
        "hf",
        help="import a transformers checkpoint folder as a run, or export a codegen run to one",
        description="Import a local Hugging Face transformers checkpoint folder (Llama/CodeLlama/DeepSeek-Coder, "
        "Qwen2/Qwen2.5-Coder, Mistral, Mixtral, CodeGen; safetensors, sharded or not, fp32/bf16/fp16) with its "
        "own tokenizer into a run directory that every command accepts, or export a codegen run to the closest "
        "transformers architecture (Llama, Qwen2, Mixtral, CodeGen) whose logits equal ours. Nothing is downloaded.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    ex = actions.add_parser("export", help="run directory -> transformers checkpoint folder")
    ex.add_argument("--run", "--run-dir", dest="run", required=True, metavar="DIR", help="finished run directory")
    ex.add_argument(
        "--out",
        required=True,
        metavar="HF_DIR",
        help="output folder (config.json, safetensors weights, generation_config.json, tokenizer files, nl2code.json)",
    )
    ex.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    ex.add_argument(
        "--max-shard-size",
        type=_size,
        default=None,
        metavar="SIZE",
        help="split the weights into shards of at most SIZE (e.g. 2GB, 500MB; default: one file)",
    )
    ex.set_defaults(func=run_export)
    im = actions.add_parser("import", help="transformers checkpoint folder -> run directory")
    im.add_argument(
        "hf_dir",
        metavar="HF_DIR",
        help=f"folder with {FILES[0]}, {FILES[1]} (or shards and their index), {FILES[2]}, {FILES[3]}",
    )
    im.add_argument("--run-dir", "--run", dest="run_dir", required=True, metavar="DIR", help="new run directory")
    im.add_argument(
        "--format",
        choices=["code", "nl_code"],
        default="code",
        help="how generate reads prompts for this run (data.format; default code: plain code "
        "completion, as a base model and HumanEval expect)",
    )
    im.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        default="auto",
        help="weights of the run (auto: as stored in the checkpoint)",
    )
    im.add_argument(
        "--max-seq-len",
        type=int,
        default=None,
        metavar="N",
        help="longest sequence the run handles (default: the checkpoint's, at most 8192)",
    )
    im.set_defaults(func=run_import)


def _size(text: str) -> int:
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "B": 1}
    t = text.strip().upper()
    for unit, factor in units.items():
        if t.endswith(unit) and t[: -len(unit)].strip().replace(".", "", 1).isdigit():
            return int(float(t[: -len(unit)]) * factor)
    if t.isdigit():
        return int(t)
    raise argparse.ArgumentTypeError(f"{text!r}: expected a size such as 2GB or 500MB")


def run_export(args: argparse.Namespace) -> int:
    import torch

    from nl2code.api import RunError, load_run
    from nl2code.hf.convert import ExportRefused, export_model

    try:
        run = load_run(args.run)
        if getattr(type(run.config.model), "kind", None) != "codegen":
            raise CLIError(f"{args.run}: only codegen runs can be exported")
        fmt = run.spec.prompt_format
        kind = export_model(run.model, args.out, run.tokenizer, getattr(torch, args.dtype), args.max_shard_size, fmt)
    except (RunError, ExportRefused) as e:
        raise CLIError(f"{args.run}: {e}") from None
    print(f"wrote {args.out} ({kind})")
    return 0


def run_import(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from nl2code.data.config import DataConfig
    from nl2code.data.tokenizer import TokenizerError, copy_checkpoint_tokenizer
    from nl2code.generation.spec import save_spec, spec_from_config
    from nl2code.hf.convert import DEFAULT_MAX_SEQ_LEN, import_model
    from nl2code.hf.llama import UnsupportedCheckpoint
    from nl2code.hf.safetensors_io import CheckpointFormatError, write_file
    from nl2code.models.hf_export import TOKENIZER_FILES
    from nl2code.models.hf_export import copy_tokenizer as copy_own_tokenizer
    from nl2code.objectives import CausalLMConfig
    from nl2code.rundir import RunDir
    from nl2code.train.config import RunConfig

    run_dir, hf_dir = RunDir(args.run_dir), Path(args.hf_dir)
    if run_dir.has_weights() or run_dir.config_file.exists():
        raise CLIError(f"{run_dir} already holds a run")
    try:
        imported = import_model(hf_dir, args.dtype, args.max_seq_len or DEFAULT_MAX_SEQ_LEN)
        own = hf_dir / TOKENIZER_FILES[1]
        infill = None
        if own.is_file() and json.loads(own.read_text(encoding="utf-8")).get("kind") != "hf":
            copy_own_tokenizer(hf_dir, run_dir.tokenizer_dir)  # exported by nl2code: keep our tokenizer
            vocab = json.loads(own.read_text(encoding="utf-8"))["vocab_size"]
        else:
            meta = copy_checkpoint_tokenizer(hf_dir, run_dir.tokenizer_dir, imported.hf_config)
            vocab, infill = meta["vocab_size"], meta["infill"]
    except (UnsupportedCheckpoint, CheckpointFormatError, TokenizerError, OSError, ValueError) as e:
        raise CLIError(str(e)) from None
    model = imported.model
    if vocab > model.cfg.vocab_size:
        raise CLIError(f"{hf_dir}: tokenizer has {vocab} tokens, the model only {model.cfg.vocab_size}")
    cfg = RunConfig(model=model.cfg, objective=CausalLMConfig(), data=DataConfig(format=args.format))
    run_dir.save_config(cfg)
    # streamed from the parameters' own memory (no serialised second copy of the model)
    write_file(run_dir.weights_file, [(n, lambda p=p: p) for n, p in model.named_parameters()], {"format": "pt"})
    # the checkpoint's tokenizer knows how it infills (FIM or CodeGen2 sentinels)
    save_spec(run_dir, dataclasses.replace(spec_from_config(cfg), infill_mode=infill))
    source = {
        "path": str(hf_dir.resolve()),
        "model_type": imported.model_type,
        "stored_dtype": str(imported.source_dtype).removeprefix("torch."),
        "run_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }
    (run_dir.path / "hf_source.json").write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
    print(f"wrote run directory {run_dir} ({imported.model_type}, {model.num_parameters():,} parameters)")
    return 0
