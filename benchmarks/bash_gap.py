"""Where a model's Bash answers lose to retrieval: CMS of its MBR top-1 and of TF-IDF's top-1 on the same rows,
grouped by how often the gold command's first utility occurs in the training commands (#18).

    python benchmarks/bash_gap.py --split grouped --samples FILE [--limit 500] [--seed 0] [--work-dir DIR]
        [--out DIR] [--name bash_gap]

FILE is a samples file bash_matched.py keeps for its ``--mbr`` setting (``WORK/samples/RUN.N_samples_MBR_(cms).json``,
made with the same ``--split``, ``--limit`` and ``--seed``); each row's samples are ranked by MBR under CMS (no gold
is read) and the first is scored. The table says whether the model trails retrieval on the frequent utilities
(the mapping from request to command is learned badly) or on the rare ones (too few pairs to learn it from).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header_md, machine_info, md_table, write_results  # noqa: E402
from bash_baselines import retrieval_samples  # noqa: E402
from matched_langs import LANGUAGES, split_data  # noqa: E402

BANDS = ((100, "100 or more"), (10, "10-99"), (1, "1-9"), (0, "none"))  # train commands with the row's utility


def utility(command: str) -> str:
    """The first word of a command (``sudo`` and ``env`` count as utilities: what the model must write first)."""
    words = command.split()
    return words[0] if words else ""


def band(count: int) -> str:
    return next(name for low, name in BANDS if count >= low)


def gap_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per band: rows, mean CMS of the model and of TF-IDF, and the band's share of the whole gap (points)."""
    out = []
    for _, name in BANDS:
        part = [r for r in rows if r["band"] == name]
        if not part:
            continue
        model, tfidf = (sum(r[k] for r in part) / len(part) for k in ("model", "tfidf"))
        out.append({"band": name, "rows": len(part), "model": model, "tfidf": tfidf,
                    "gap_points": 100 * (tfidf - model) * len(part) / len(rows)})  # fmt: skip
    return out


def main() -> None:
    from nl2code.eval.metrics.cms import cms
    from nl2code.generation.rerank import mbr
    from nl2code.utils.seed import seeded_subset

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", default="grouped", choices=["paper", "grouped"])
    p.add_argument("--samples", required=True, help="a bash_matched.py --mbr samples file of this split")
    p.add_argument("--limit", type=int, default=500, help="seeded random test rows, as the run drew them")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", default="/tmp/nl2code_bash_gap", help="where the grouped split is written")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--name", default="bash_gap")
    args = p.parse_args()
    started = time.monotonic()
    lang = LANGUAGES["bash"]
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    _, all_problems, train = split_data(lang, args.split, work)
    problems = {k: all_problems[k] for k in seeded_subset(list(all_problems), args.limit or None, args.seed)}
    try:
        samples = json.loads(Path(args.samples).read_text())
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"--samples: cannot read {args.samples}: {e}")
    if set(samples) != set(problems):
        sys.exit(f"--samples: {args.samples} holds {len(samples)} rows, not the {len(problems)} drawn here "
                 "(same --split, --limit and --seed as the run that made it?)")  # fmt: skip
    counts = Counter(utility(r.code) for r in train)
    near = retrieval_samples(train, problems, 1)
    rows = []
    for t, prob in problems.items():
        top = mbr(samples[t], lru_cache(maxsize=None)(cms))[0]
        n = counts[utility(prob.code)]
        rows.append({"task_id": t, "band": band(n), "train_count": n, "model": cms(top, prob.code),
                     "tfidf": cms(near[t][0], prob.code), "gold": prob.code, "model_top": top})  # fmt: skip
    table = gap_table(rows)
    result = {"command": shlex.join(["python", "benchmarks/bash_gap.py", *sys.argv[1:]]), "machine": machine_info(),
              "split": args.split, "rows": len(rows), "seed": args.seed, "samples": args.samples, "bands": table,
              "model": sum(r["model"] for r in rows) / len(rows), "tfidf": sum(r["tfidf"] for r in rows) / len(rows),
              "per_row": rows, "wall_s": round(time.monotonic() - started, 1)}  # fmt: skip
    lines = [
        header_md(
            "Bash: where the model trails retrieval, by how common the command's utility is (#18)",
            result["command"],
            result["machine"],
        ),  # fmt: skip
        f"{len(rows)} test rows of the {args.split} split (seed {args.seed}); the model's MBR top-1 (CMS utility, "
        f"no valid-first) and TF-IDF's nearest train command; CMS in percent. All rows: model "
        f"{100 * result['model']:.1f}, TF-IDF {100 * result['tfidf']:.1f}.",
        "",
        md_table(
            [
                "train commands with the gold's first utility",
                "rows",
                "model CMS@1",
                "TF-IDF CMS@1",
                "share of the gap (points)",
            ],
            [
                [b["band"], b["rows"], f"{100 * b['model']:.1f}", f"{100 * b['tfidf']:.1f}", f"{b['gap_points']:+.1f}"]
                for b in table
            ],
        ),  # fmt: skip
        "",
    ]
    write_results(args.name, result, "\n".join(lines), args.out)


if __name__ == "__main__":
    main()
