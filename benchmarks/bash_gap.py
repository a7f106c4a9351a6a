"""Where a model's Bash answers lose to retrieval: CMS of its MBR top-1 and of TF-IDF's top-1 on the same rows,
grouped by how often the gold command's first utility occurs in the training commands (#18).

    python benchmarks/bash_gap.py --split grouped --samples FILE [--limit 500] [--seed 0] [--work-dir DIR]
        [--out DIR] [--name bash_gap]

FILE is a samples file bash_matched.py keeps for its ``--mbr`` setting (``WORK/samples/RUN.N_samples_MBR_(cms).json``,
made with the same ``--split``, ``--limit`` and ``--seed``); each row's samples are ranked by MBR under CMS (no gold
is read) and the first is scored as the NL2Bash task judges it (against every gold of the same request), beside
TF-IDF's nearest train command and the constant answer on the same rows. The table says whether the model trails
retrieval on the frequent utilities (the mapping from request to command is learned badly) or on the rare ones (too
few pairs to learn it from).
"""

from __future__ import annotations

import argparse
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
from matched_langs import LANGUAGES, add_row_args, constant_answer, sampled_rows, utility_of  # noqa: E402
from mbr_pool import load_samples  # noqa: E402

BANDS = ((100, "100 or more"), (10, "10-99"), (1, "1-9"), (0, "none"))  # train commands with the row's utility
SCORES = ("model", "tfidf", "constant")  # the per-row CMS a band averages (those its rows carry)


def utility(command: str) -> str:
    """The first word of a command (``sudo`` and ``env`` count as utilities: what the model must write first)."""
    words = command.split()
    return words[0] if words else ""


def band(count: int) -> str:
    return next(name for low, name in BANDS if count >= low)


def gap_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per band: rows, mean CMS of the model, of TF-IDF (and of the constant answer), and the band's share of the
    model's whole gap to TF-IDF (points)."""
    out = []
    for _, name in BANDS:
        part = [r for r in rows if r["band"] == name]
        if not part:
            continue
        means = {k: sum(r[k] for r in part) / len(part) for k in SCORES if k in part[0]}
        gap = 100 * (means["tfidf"] - means["model"]) * len(part) / len(rows)
        out.append({"band": name, "rows": len(part), **means, "gap_points": gap})
    return out


def first_cms(problems: dict[str, Any], first: dict[str, str]) -> dict[str, float]:
    """Each row's CMS of one candidate as the NL2Bash task judges it (against every gold of the same request)."""
    from nl2code.eval.tasks import EvalContext, get_task

    res = get_task("codefusion-bash").judge(
        problems, {t: [c] for t, c in first.items()}, EvalContext(ks=(1,), workers=1, progress=False)
    )
    return {r["task_id"]: r["cms"] for r in res.results}


def main() -> None:
    from nl2code.generation.rerank import mbr

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", default="grouped", choices=["paper", "grouped"])
    p.add_argument("--samples", required=True, help="a bash_matched.py --mbr samples file of this split")
    add_row_args(p, "/tmp/nl2code_bash_gap", "bash_gap")
    args = p.parse_args()
    started = time.monotonic()
    lang = LANGUAGES["bash"]
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    problems, train = sampled_rows(lang, args.split, work, args.limit, args.seed)
    samples = load_samples(f"model={args.samples}", problems, least=1)[0]["model"]
    counts = Counter(utility(r.code) for r in train)
    near = retrieval_samples(train, problems, 1)
    constant = constant_answer(lang, train)
    tops = {t: mbr(s, lru_cache(maxsize=None)(utility_of(lang)))[0] for t, s in samples.items()}  # as bash_matched
    scored = {
        "model": first_cms(problems, tops),
        "tfidf": first_cms(problems, {t: near[t][0] for t in problems}),
        "constant": first_cms(problems, dict.fromkeys(problems, constant)),
    }
    rows = []
    for t, prob in problems.items():
        n = counts[utility(prob.code)]
        rows.append({"task_id": t, "band": band(n), "train_count": n, **{k: v[t] for k, v in scored.items()},
                     "gold": prob.code, "model_top": tops[t]})  # fmt: skip
    table = gap_table(rows)
    whole = {k: sum(r[k] for r in rows) / len(rows) for k in SCORES}
    result = {"command": shlex.join(["python", "benchmarks/bash_gap.py", *sys.argv[1:]]), "machine": machine_info(),
              "split": args.split, "rows": len(rows), "seed": args.seed, "samples": args.samples, "bands": table,
              **whole, "per_row": rows, "wall_s": round(time.monotonic() - started, 1)}  # fmt: skip
    lines = [
        header_md(
            "Bash: where the model trails retrieval, by how common the command's utility is (#18)",
            result["command"],
            result["machine"],
        ),  # fmt: skip
        f"{len(rows)} test rows of the {args.split} split (seed {args.seed}); the model's MBR top-1 (CMS utility, "
        f"no valid-first), TF-IDF's nearest train command and the constant answer `{constant}`; CMS in percent. "
        f"All rows: model {100 * whole['model']:.1f}, TF-IDF {100 * whole['tfidf']:.1f}, constant "
        f"{100 * whole['constant']:.1f}.",
        "",
        md_table(
            [
                "train commands with the gold's first utility",
                "rows",
                "model CMS@1",
                "TF-IDF CMS@1",
                "constant CMS@1",
                "share of the gap to TF-IDF (points)",
            ],
            [[b["band"], b["rows"], *(f"{100 * b[k]:.1f}" for k in SCORES), f"{b['gap_points']:+.1f}"] for b in table],
        ),  # fmt: skip
        "",
    ]
    write_results(args.name, result, "\n".join(lines), args.out)


if __name__ == "__main__":
    main()
