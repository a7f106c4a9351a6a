"""``nl2code tokenizer``: train a byte-level BPE tokenizer on data sources and save it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from nl2code.cli import CLIError


def parse_source_spec(spec: str) -> tuple[str, str | None]:
    """``conala=../shared/data/conala`` -> ("conala", path); ``pysource`` -> ("pysource", None)."""
    name, _, path = spec.partition("=")
    if not name:
        raise CLIError(f"bad --source {spec!r}: expected NAME or NAME=PATH")
    return name, (path or None)


def corpus_texts(specs: list[str]) -> Iterator[str]:
    """NL and code of every record of the named sources (records with empty NL give code only)."""
    from nl2code.data.sources import SOURCES, load_source

    for spec in specs:
        name, path = parse_source_spec(spec)
        if name not in SOURCES:
            raise CLIError(f"unknown source {name!r} (known: {', '.join(sorted(SOURCES))})")
        for rec in load_source(name, path).records:
            if rec.nl:
                yield rec.nl
            yield rec.code


def train_tokenizer(args: argparse.Namespace) -> int:
    from nl2code.data.tokenizer import CodeTokenizer

    out = Path(args.out)
    if CodeTokenizer.saved_in(out) and not args.force:
        raise CLIError(f"{CodeTokenizer.file_in(out)} exists; pass --force to overwrite")
    specs = args.source or ["pysource"]
    texts = list(corpus_texts(specs))
    print(f"training byte-level BPE (vocab {args.vocab_size}) on {len(texts)} texts from {specs}", file=sys.stderr)
    tok = CodeTokenizer.train(
        texts,
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        num_sentinels=args.sentinels,
        show_progress=sys.stderr.isatty(),
    )
    tok.save(out)
    n_tokens = sum(len(ids) for ids in tok.encode_batch(texts))
    n_chars = sum(len(t) for t in texts)
    summary = {"out": str(out), "vocab_size": tok.vocab_size, "texts": len(texts),
               "chars_per_token": round(n_chars / max(n_tokens, 1), 3)}
    print(json.dumps(summary))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from nl2code.data.tokenizer import CodeTokenizer

    p = sub.add_parser("tokenizer", help="train and inspect tokenizers",
                       description="Train and inspect byte-level BPE tokenizers.")
    tsub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION")
    tsub.required = True
    t = tsub.add_parser(
        "train",
        help="train a byte-level BPE tokenizer on data sources",
        description="Train a byte-level BPE tokenizer (with pad/eos/mask/sentinel/sep/eom/FIM special "
        f"tokens) on the NL and code of one or more data sources, and save it to {CodeTokenizer.file_in('OUT')}.",
    )
    t.add_argument("out", help="output directory (a run directory or a tokenizer folder)")
    t.add_argument("--source", action="append", metavar="NAME[=PATH]",
                   help="data source to train on, repeatable (default: pysource, the installed stdlib); "
                   "see `nl2code data stats --help` for source names")
    t.add_argument("--vocab-size", type=int, default=8192, help="vocabulary size incl. specials (default 8192)")
    t.add_argument("--min-frequency", type=int, default=2, help="minimum pair frequency to merge (default 2)")
    t.add_argument("--sentinels", type=int, default=16, help="number of <mask_N> sentinels (default 16)")
    t.add_argument("--force", action="store_true", help="overwrite an existing tokenizer in OUT")
    t.set_defaults(func=train_tokenizer)
