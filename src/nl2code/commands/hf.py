"""``nl2code hf export|import``: convert between run directories and Hugging Face LLaMA checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from nl2code.cli import CLIError


def add_parser(sub: argparse._SubParsersAction) -> None:
    from nl2code.models.hf_export import FILES

    p = sub.add_parser(
        "hf",
        help="export a codegen run to a transformers LLaMA checkpoint, or import one as a run",
        description="Convert a codegen run (mlp: swiglu, dense) to a Hugging Face transformers LlamaForCausalLM "
        f"directory whose logits equal ours, or turn such a directory (with an nl2code {FILES[2]}) "
        "into a run directory that nl2code generate/infill/train can use.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    ex = actions.add_parser("export", help="run directory -> LLaMA checkpoint directory")
    ex.add_argument("--run", "--run-dir", dest="run", required=True, metavar="DIR", help="finished run directory")
    ex.add_argument("--out", required=True, metavar="HF_DIR", help=f"output folder ({', '.join(FILES)})")
    ex.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    ex.set_defaults(func=run_export)
    im = actions.add_parser("import", help="LLaMA checkpoint directory -> run directory")
    im.add_argument("hf_dir", metavar="HF_DIR", help=f"folder with {', '.join(FILES[:3])}")
    im.add_argument("--run-dir", "--run", dest="run_dir", required=True, metavar="DIR", help="new run directory")
    im.add_argument("--format", choices=["code", "nl_code"], default="code",
                    help="how generate reads prompts for this run (data.format; default code)")
    im.set_defaults(func=run_import)


def run_export(args: argparse.Namespace) -> int:
    import torch

    from nl2code.api import RunError, load_run
    from nl2code.models.hf_export import ExportError, export_llama

    try:
        run = load_run(args.run)
        if getattr(type(run.config.model), "kind", None) != "codegen":
            raise CLIError(f"{args.run}: only codegen runs can be exported")
        export_llama(run.model, args.out, run.tokenizer, getattr(torch, args.dtype))
    except (RunError, ExportError) as e:
        raise CLIError(str(e)) from None
    print(f"wrote {args.out} (LlamaForCausalLM)")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from nl2code.data.config import DataConfig
    from nl2code.generation.spec import save_spec, spec_from_config
    from nl2code.models.hf_export import TOKENIZER_FILES, ExportError, copy_tokenizer, import_llama
    from nl2code.objectives import CausalLMConfig
    from nl2code.rundir import RunDir
    from nl2code.train.config import RunConfig

    run_dir, hf_dir = RunDir(args.run_dir), Path(args.hf_dir)
    if run_dir.has_weights() or run_dir.config_file.exists():
        raise CLIError(f"{run_dir} already holds a run")
    try:
        model = import_llama(hf_dir)
    except ExportError as e:
        raise CLIError(str(e)) from None
    copy_tokenizer(hf_dir, run_dir.tokenizer_dir)
    try:
        tok = run_dir.load_tokenizer()
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(f"{hf_dir}: needs an nl2code {TOKENIZER_FILES[0]} ({e})") from None
    if tok.vocab_size > model.cfg.vocab_size:
        raise CLIError(f"{hf_dir}: tokenizer has {tok.vocab_size} tokens, the model only {model.cfg.vocab_size}")
    cfg = RunConfig(model=model.cfg, objective=CausalLMConfig(), data=DataConfig(format=args.format))
    run_dir.save_config(cfg)
    run_dir.save_weights(model)
    save_spec(run_dir, spec_from_config(cfg))
    print(f"wrote run directory {run_dir}")
    return 0
