"""The one ``nl2code`` entry point. Each subcommand lives in ``nl2code.commands.<name>`` (``-`` -> ``_``).

A command module exposes ``add_parser(subparsers)``, which registers its parser and sets
``func`` (an ordinary importable function taking the parsed namespace and returning an exit code).
Modules are imported lazily only when building the parser, so importing nl2code does no work.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from nl2code.errors import UserError

# Order here is the order in `nl2code --help`. Only commands that work are listed.
COMMANDS = ["demo", "data", "tokenizer", "train", "merge-moe", "generate", "infill", "eval", "report", "serve", "hf"]


# The CLI's name for the user-error base: library errors derive from it without importing the CLI.
CLIError = UserError


def version() -> str:
    """The installed distribution's version (the source tree's when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("nl2code")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nl2code",
        description="Train, sample and evaluate natural-language-to-code models.",
        epilog="the same words everywhere: --run DIR names a run to read (generate, infill, serve, hf export), "
        "--run-dir DIR one to create (train, hf import, merge-moe, demo); each command accepts the other "
        "spelling too. --out names what a command writes: a folder where it writes several files (eval, "
        "report, demo, hf export, merge-moe), a file where it writes one (generate). --device defaults to "
        "auto (CUDA when available) everywhere.",
    )
    parser.add_argument("--version", action="version", version=f"nl2code {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"nl2code.commands.{name.replace('-', '_')}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from nl2code.config import ConfigError
    from nl2code.data.records import DataError

    try:
        code = args.func(args)
    except (CLIError, ConfigError, DataError) as e:
        print(f"nl2code {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
