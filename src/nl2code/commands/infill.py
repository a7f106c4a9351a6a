"""``nl2code infill --run DIR --prefix P --suffix S``: fill in the middle between a prefix and a suffix."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from nl2code.cli import CLIError
from nl2code.commands.generate import _generation_config, add_rounding, check_settings, default_steps, set_threads


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "infill",
        help="generate the code between a prefix and a suffix with a trained run",
        description="Fill in the middle: generate -n candidates for the text between --prefix and --suffix, "
        "best first. Codegen runs use the format they were trained with (codegen2 span corruption: "
        "'prefix <mask_1> suffix <eos> <sep> <mask_1>' until <eom>; FIM: PSM or SPM until <eos>).",
        epilog="example: nl2code infill --run runs/codegen2 --prefix 'def add(a, b):\\n    return ' "
        "--suffix '\\n' -n 3 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run", "--run-dir", dest="run", required=True, metavar="DIR", help="run directory")
    p.add_argument("--prefix", help="text before the gap (Python escapes like \\n are decoded)")
    p.add_argument("--suffix", help="text after the gap (Python escapes like \\n are decoded)")
    p.add_argument("--prefix-file", metavar="FILE", help="read the prefix from a file (verbatim)")
    p.add_argument("--suffix-file", metavar="FILE", help="read the suffix from a file (verbatim)")
    p.add_argument(
        "--mode",
        choices=["auto", "codegen2", "psm", "spm"],
        default="auto",
        help="codegen: infill format; auto = the one the run trained with",
    )
    p.add_argument("-n", type=int, default=1, help="candidates (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="diffusion: denoising steps (default 20, at most the training T)")
    add_rounding(p)
    p.add_argument(
        "--temperature", type=float, default=0.0, help="0 = greedy, or beam search when -n > 1 (default); > 0 samples"
    )
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--stop", action="append", default=[], metavar="STR", help="stop string (repeatable)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--json", action="store_true", help="print a JSON list of the candidate middles")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="default auto")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (0 = PyTorch's default)")
    p.set_defaults(func=run)


def _text(value: str | None, path: str | None, name: str) -> str:
    from nl2code.commands.generate import unescape

    if (value is None) == (path is None):
        raise CLIError(f"give exactly one of --{name} and --{name}-file")
    if path is None:
        return unescape(value)
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CLIError(f"--{name}-file {path}: cannot read: {e}") from None


def run(args: argparse.Namespace) -> int:
    from nl2code.api import RunError, load_generator
    from nl2code.utils.device import resolve_device

    prefix, suffix = _text(args.prefix, args.prefix_file, "prefix"), _text(args.suffix, args.suffix_file, "suffix")
    args.prompts, args.prompts_file, args.benchmark = [], None, None
    cfg = _generation_config(args)
    try:
        set_threads(args.threads)
        gen = load_generator(args.run, resolve_device(args.device))
    except (RunError, RuntimeError) as e:
        raise CLIError(str(e)) from None
    cfg = dataclasses.replace(cfg, steps=default_steps(gen, cfg.steps))
    check_settings(gen, cfg)
    try:
        if args.mode != "auto":
            if getattr(gen, "kind", None) != "codegen":
                raise CLIError("--mode applies to codegen runs only")
            cands = gen.infill(prefix, suffix, cfg, mode=args.mode)
        else:
            cands = gen.infill(prefix, suffix, cfg)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.json:
        print(json.dumps([c.text for c in cands], ensure_ascii=False))
    else:
        for rank, c in enumerate(cands):
            print(f"--- {rank + 1} (score {c.score:.3f})\n{c.text}")
    return 0
