"""``nl2code data``: inspect the data sources (``data stats``; later subcommands join the group)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

STATS_HELP = """\
Load a data source and print its rows per split, the rows it dropped (with reasons) and notes.
With --json, stdout gets only one JSON object mapping split -> row count; drops and notes go to
stderr. Malformed input is reported as one line naming the file, row and field (exit 2).
"""


def _sources_epilog() -> str:
    from nl2code.data.sources import SOURCES, describe, path_optional, source_options

    lines = ["sources (PATH in brackets = optional; options are given as -o KEY=VALUE):"]
    for name in SOURCES:
        lines.append(f"  {name} [PATH]" if path_optional(name) else f"  {name} PATH")
        lines.append(f"      {describe(name)}")
        opts = source_options(name)
        if opts:
            lines.append("      options: " + ", ".join(f"{k}={v!r}" for k, v in opts.items()))
    lines.append("\nexample: nl2code data stats mbpp ../shared/data/mbpp/mbpp.jsonl --json")
    return "\n".join(lines)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from nl2code.data.sources import SOURCES

    parser = subparsers.add_parser(
        "data",
        help="inspect the NL->code data sources",
        description="Work with the project's data sources (loaders for CodeFusion, CoNaLa, NL2Bash, "
        "MBPP, HumanEval, MTPB, XLCoST, mined Python sources).",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True
    stats = sub.add_parser(
        "stats",
        help="row counts per split, drops and notes of one source",
        description=STATS_HELP,
        epilog=_sources_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument("source", metavar="SOURCE", choices=list(SOURCES), help="one of the sources below")
    stats.add_argument("path", metavar="PATH", nargs="?", help="file or folder of the source")
    stats.add_argument("--json", action="store_true", help="print only {split: rows} as JSON")
    stats.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a source option (value read as YAML: 0.1, true, null, text); repeatable",
    )
    stats.set_defaults(func=run_stats)


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values parsed as YAML scalars/lists)."""
    from nl2code.cli import CLIError

    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"option {item!r} is not KEY=VALUE")
        try:
            options[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise CLIError(f"option {key!r}: cannot read value {raw!r}") from None
    return options


def run_stats(args: argparse.Namespace) -> int:
    from nl2code.cli import CLIError
    from nl2code.data.sources import SourceError, load_source

    try:
        result = load_source(args.source, args.path, **parse_options(args.option))
    except SourceError as e:
        raise CLIError(str(e)) from None
    counts = result.split_counts()
    if args.json:
        print(json.dumps(counts))
        for reason, n in sorted(result.dropped.items()):
            print(f"dropped {n}: {reason}", file=sys.stderr)
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        return 0
    where = args.path if args.path is not None else "(default path)"
    print(f"{args.source}: {where}")
    width = max([len(s) for s in counts] + [5])
    for split, n in counts.items():
        print(f"  {split:<{width}}  {n:>8,}")
    print(f"  {'total':<{width}}  {sum(counts.values()):>8,}")
    if result.dropped:
        print(f"dropped ({sum(result.dropped.values()):,}):")
        for reason, n in sorted(result.dropped.items()):
            print(f"  {n:>8,}  {reason}")
    else:
        print("dropped: none")
    for note in result.notes:
        print(f"note: {note}")
    return 0
