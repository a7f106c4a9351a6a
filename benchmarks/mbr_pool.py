"""Minimum Bayes risk over the pooled samples of several runs: an ensemble of training seeds, judged beside each
run's own MBR ranking and the baselines on the same rows (#18).

    python benchmarks/mbr_pool.py --language cf --split paper --samples NAME=FILE,NAME=FILE[,...] [--limit 500]
        [--seed 0] [--work-dir DIR] [--out DIR] [--name mbr_pool]

Each FILE is a samples file bash_matched.py keeps (``WORK/samples/RUN.SETTING.json``: the candidates of one
sampling setting by task id, as generated), made with the same ``--language``, ``--split``, ``--limit`` and
``--seed``, so its rows are the ones drawn here. Every run's samples are ranked by MBR alone (as bash_matched.py
ranks them), then all runs' samples of a row are pooled and ranked together under the language's utility
(matched_mbr.rankings: plainly and with the first 5 as a set); no gold is read. Writes ``OUT/NAME.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header_md, machine_info, md_table, write_results  # noqa: E402
from bash_baselines import retrieval_samples  # noqa: E402
from matched_langs import (  # noqa: E402
    LANGUAGES,
    add_row_args,
    columns,
    constant_answer,
    judge_variants,
    percents,
    sampled_rows,
)  # fmt: skip
from matched_mbr import mbr_label, rankings  # noqa: E402


def load_samples(
    spec: str, problems: dict[str, Any], least: int = 2
) -> tuple[dict[str, dict[str, list[str]]], dict[str, str]]:
    """(NAME -> candidates by task id, NAME -> file), each file checked to hold exactly ``problems``' rows; at least
    ``least`` files."""
    out, paths = {}, {}
    for item in spec.split(","):
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            sys.exit(f"--samples: expected NAME=FILE, got {item!r}")
        try:
            samples = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            sys.exit(f"--samples {name}: cannot read {path}: {e}")
        if set(samples) != set(problems):
            sys.exit(f"--samples {name}: {path} holds {len(samples)} rows, not the {len(problems)} drawn here "
                     "(same --language, --split, --limit and --seed as the run that made it?)")  # fmt: skip
        out[name], paths[name] = samples, path
    if len(out) < least:
        sys.exit(f"--samples: give at least {least} runs' samples")
    return out, paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--language", default="cf", choices=sorted(LANGUAGES))
    p.add_argument("--split", default="paper", choices=["paper", "grouped"])
    p.add_argument("--samples", required=True, help="NAME=FILE,...: saved samples of one setting, one file per run")
    add_row_args(p, "/tmp/nl2code_mbr_pool", "mbr_pool")
    args = p.parse_args()
    started = time.monotonic()
    lang = LANGUAGES[args.language]
    if not lang.mbr:
        sys.exit(f"--language {args.language}: no MBR utility")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    problems, train = sampled_rows(lang, args.split, work, args.limit, args.seed)
    runs, paths = load_samples(args.samples, problems)
    label = "pooled (" + " + ".join(runs) + ")"

    def ranked(name: str, samples: dict[str, list[str]]) -> dict[str, dict[str, list[str]]]:
        # rankings() ranks the setting mbr_label names, "N samples, MBR (...)", N from the samples themselves
        setting = argparse.Namespace(**{**vars(args), "mbr": max(len(c) for c in samples.values())})
        out = rankings(mbr_label(setting), samples, setting, problems=problems)
        return {f"{name}, {k}": v for k, v in out.items()}

    constant = constant_answer(lang, train)
    answers = {"baseline: constant": {t: [constant] for t in problems}}
    answers["baseline: tfidf"] = retrieval_samples(train, problems, lang.pool)
    for name, samples in runs.items():
        answers.update(ranked(name, samples))
    pooled = {t: [c for s in runs.values() for c in s[t]] for t in problems}
    answers.update(ranked(label, pooled))
    evals = {}
    for base, samples in answers.items():
        for suffix, scores in judge_variants(lang, problems, samples).items():
            evals[base + suffix] = scores
            print(f"{base + suffix}: " + json.dumps({k: round(v, 3) for k, v in scores.items()}), flush=True)
    keys = columns(lang)
    rows = [[name, *percents(v, keys)] for name, v in evals.items()]
    command = "python benchmarks/mbr_pool.py " + shlex.join(sys.argv[1:])
    result = {
        "command": command,
        "machine": machine_info(),
        "language": args.language,
        "split": args.split,
        "rows": len(problems),
        "seed": args.seed,
        "samples": paths,
        "evals": evals,
        "wall_s": round(time.monotonic() - started, 1),
    }
    md = "\n".join([
        header_md(f"MBR over the pooled samples of {len(runs)} runs on {args.language} (#18)", command,
                  result["machine"]),
        f"{len(problems)} test rows of the {args.split} split (seeded sample, seed {args.seed}); wall time "
        f"{result['wall_s']} s.",
        "",
        md_table(["ranking", *keys], rows),
        "",
    ])  # fmt: skip
    write_results(args.name, result, md, args.out)


if __name__ == "__main__":
    main()
