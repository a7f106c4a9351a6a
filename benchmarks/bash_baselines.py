"""Bash metric baselines on CodeFusion's full Bash test split: gold, a constant answer, TF-IDF retrieval.

One command regenerates benchmarks/results/bash_baselines.md and .json:

    python benchmarks/bash_baselines.py [--data ../shared/data/codefusion/benchmarks/BashBenchmarks.json]
                                        [--sample N --seed S]

Every baseline goes through the ``codefusion-bash`` task's ``judge`` (the code ``nl2code eval`` runs)
with k = 1, 3, 5, once with gold commands grouped by identical descriptions (the default) and once by
the normalised description key (``--bash-group normalized``). Baselines:

* **gold**: each row's own command (CMS and template accuracy must be 1.0);
* **constant**: ``find . -name x`` for every row;
* **tfidf**: the commands of the 5 train rows whose descriptions are nearest (TF-IDF cosine) to the
  test description, distinct commands in rank order (ties broken by train order, so the run is
  deterministic).

Reference values, measured with the official NL2Bash scorer on the same 2,522 rows (issue #17):
constant CMS 41.6, template accuracy 6.3; retrieval CMS 45.7 (top-1) / 63.4 (top-5), template
accuracy 8.9 / 18.3. The whole split is evaluated unless ``--sample N`` asks for a seeded random sample
of N rows (never a prefix: the first 400 test rows are 99 % ``find`` commands).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, header_md, load_average, machine_info, md_table, write_results  # noqa: E402

DEFAULT_DATA = DATA / "codefusion" / "benchmarks" / "BashBenchmarks.json"
KS = [1, 3, 5]
CONSTANT = "find . -name x"
REFERENCE = {  # official NL2Bash scorer on the full split (issue #17), percent
    "constant": {"cms@1": 41.6, "template_match@1": 6.3},
    "tfidf": {"cms@1": 45.7, "cms@5": 63.4, "template_match@1": 8.9, "template_match@5": 18.3},
}


def retrieval_samples(train: list[Any], test: dict[str, Any], k: int) -> dict[str, list[str]]:
    """The distinct commands of the ``k`` train rows nearest to each test utterance (nl2code.data.retrieval)."""
    from nl2code.data.retrieval import Retriever

    index = Retriever(train)
    return {tid: index.neighbours(problem.nl, k) for tid, problem in test.items()}


def run(data: Path, sample: int, seed: int) -> dict[str, Any]:
    from nl2code.data.sources import load_source
    from nl2code.eval.tasks import EvalContext, get_task

    task = get_task("codefusion-bash")
    records = load_source("codefusion-bash", str(data)).records
    train = [r for r in records if r.split == "train"]
    problems = task.load_problems(str(data))
    if sample:
        chosen = sorted(random.Random(seed).sample(sorted(problems), sample), key=list(problems).index)
        problems = {t: problems[t] for t in chosen}
    start = time.monotonic()
    baselines = {
        "gold": {t: [p.code.rstrip("\n")] for t, p in problems.items()},
        "constant": {t: [CONSTANT] for t in problems},
        "tfidf": retrieval_samples(train, problems, max(KS)),
    }
    retrieval_s = time.monotonic() - start
    results: dict[str, Any] = {}
    for group in ("exact", "normalized"):
        ctx = EvalContext(ks=KS, workers=1, progress=False, bash_group=group)
        for name, samples in baselines.items():
            t0 = time.monotonic()
            res = task.judge(problems, samples, ctx)
            keep = [f"{m}@{k}" for m in ("cms", "template_match", "command_match") for k in KS] + ["nlc2cmd"]
            results.setdefault(name, {})[group] = {
                "metrics": {m: res.metrics[m] for m in keep},
                "problems_with_several_golds": res.extra["problems_with_several_golds"],
                "seconds": round(time.monotonic() - t0, 2),
            }
    return {
        "data": str(data),
        "rows": len(problems),
        "train_rows": len(train),
        "sample": sample or None,
        "seed": seed,
        "ks": KS,
        "constant": CONSTANT,
        "reference_official_percent": REFERENCE,
        "baselines": results,
        "retrieval_seconds": round(retrieval_s, 2),
    }


def markdown(result: dict[str, Any], command: str, machine: dict[str, Any]) -> str:
    scope = (
        f"seeded random sample of {result['sample']} rows (seed {result['seed']})"
        if result["sample"]
        else f"the full test split ({result['rows']} rows)"
    )
    notes = [
        f"CodeFusion Bash benchmark ({result['data']}), {scope}; TF-IDF index over the {result['train_rows']} "
        "train descriptions. Scores in percent.",
        "CMS = command match score (the NL2Bash README's and CodeFusion's \"TM\": cosine of bags of utilities "
        "and flags, arguments ignored; best of the first k); template = exact template accuracy; command = "
        "whitespace-normalised full-command match.",
        "`official (#17)` = the official NL2Bash scorer on the same rows with its own retrieval, as quoted "
        "in issue #17 (measured outside this repository; for comparison only).",
        f"Wall time {result['wall_s']} s (retrieval {result['retrieval_seconds']} s).",
    ]
    lines = [header_md("Bash metric baselines", command, machine, notes), ""]
    heads = ["baseline", "grouping"] + [f"CMS@{k}" for k in KS] + [f"template@{k}" for k in KS] + ["command@1"]
    rows = []
    for name, by_group in result["baselines"].items():
        for group, r in by_group.items():
            m = r["metrics"]
            rows.append(
                [name, group]
                + [f"{100 * m[f'cms@{k}']:.1f}" for k in KS]
                + [f"{100 * m[f'template_match@{k}']:.1f}" for k in KS]
                + [f"{100 * m['command_match@1']:.1f}"]
            )
        for label, refs in (("official (#17)", result["reference_official_percent"]),):
            ref = refs.get(name)
            if ref and not result["sample"]:
                rows.append(
                    [name, label]
                    + [str(ref.get(f"cms@{k}", "")) for k in KS]
                    + [str(ref.get(f"template_match@{k}", "")) for k in KS]
                    + [""]
                )
    lines.append(md_table(heads, rows))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BashBenchmarks.json")
    ap.add_argument("--sample", type=int, default=0, help="a seeded random sample of N test rows (0 = all)")
    ap.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    if not args.data.is_file():
        print(f"{args.data} not found", file=sys.stderr)
        return 2
    command = "python benchmarks/bash_baselines.py" + (
        f" --sample {args.sample} --seed {args.seed}" if args.sample else ""
    )
    machine = machine_info()
    start = time.monotonic()
    result = run(args.data, args.sample, args.seed)
    result["wall_s"] = round(time.monotonic() - start, 1)
    machine["load_after"] = load_average()
    result["command"], result["machine"] = command, machine
    kwargs = {"out": args.out} if args.out else {}
    path = write_results("bash_baselines", result, markdown(result, command, machine), **kwargs)
    print(path.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
