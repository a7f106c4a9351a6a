"""Retrieve-then-rerank on Bash with a trained AR run (issue #18, beyond the paper): can the model's
likelihood reorder TF-IDF's nearest commands (plus its own beams) better than TF-IDF does?

    python benchmarks/bash_rerank.py --run RUN_DIR [--k 10] [--beams] [--limit 500] [--held 200] [--seed 0]

The pool of an utterance is the distinct commands of its ``--k`` nearest training rows (the run's own
training records, its held-out part removed) and, with ``--beams``, the run's 5-beam candidates; each
is scored ``mean token log-prob + weight x TF-IDF cosine`` (nl2code.generation.rerank). The weight is
chosen by CMS@1 on ``--held`` seeded held-out training pairs of the run (never the test rows); the
test rows (a seeded sample of the paper split) are reported at weight 0 (the model alone), at the
chosen weight and at 1e3 (the retrieval order), beside the constant and TF-IDF rows of bash_matched.py.
Writes benchmarks/results/NAME.{md,json} (``--name``, default bash_rerank).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header_md, machine_info, md_table, write_results  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a finished AR run trained on the Bash paper split")
    p.add_argument("--k", type=int, default=10, help="retrieved commands per utterance")
    p.add_argument("--beams", action="store_true", help="add the run's 5-beam candidates to each pool")
    p.add_argument("--limit", type=int, default=500, help="seeded random test rows (0 = the whole split)")
    p.add_argument("--held", type=int, default=200, help="held-out training pairs that choose the weight")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="bash_rerank")
    args = p.parse_args()
    import random

    import torch

    torch.set_num_threads(args.threads)
    import matched_langs as ml
    from bash_baselines import retrieval_samples

    from nl2code.api import GenerationConfig, load_run
    from nl2code.data.pipeline import load_splits
    from nl2code.data.retrieval import retriever_for
    from nl2code.generation import rerank as rr
    from nl2code.generation.autoregressive import ARGenerator
    from nl2code.utils.seed import seeded_subset

    started = time.monotonic()
    lang = ml.LANGUAGES["bash"]
    _, problems, train = ml.split_data(lang, "paper", Path(args.run))  # the paper split writes no file
    test = {k: problems[k] for k in seeded_subset(list(problems), args.limit or None, args.seed)}
    run = load_run(args.run)
    run.model.eval()
    gen = ARGenerator(run)
    index = retriever_for(run.config.data)
    held_rows = load_splits(run.config.data)[1]
    if not held_rows:
        sys.exit(f"{args.run}: the run holds out no training pairs (data.eval_fraction 0): nothing to choose on")
    held = {r.task_id: r for r in random.Random(args.seed).sample(held_rows, min(args.held, len(held_rows)))}
    beam = GenerationConfig(n=5, max_new_tokens=64, stop=("\n",), seed=args.seed, batch_size=32)

    def pools(rows: dict[str, Any]) -> dict[str, list[rr.Scored]]:
        ids = list(rows)
        beams = gen.generate([rows[i].nl for i in ids], beam) if args.beams else [[] for _ in ids]
        return {
            i: rr.candidates(gen, index, rows[i].nl, args.k, [c.text for c in b])
            for i, b in zip(ids, beams, strict=True)
        }

    weight, grid = rr.choose_weight(pools(held), lambda s: ml.judge(lang, held, s)["cms@1"])
    pool = pools(test)
    keys = [f"{m}@{k}" for m in lang.metrics for k in ml.KS]
    rows = {
        "baseline: constant": ml.judge(lang, test, {t: [ml.constant_answer(lang, train)] for t in test}),
        "baseline: tfidf": ml.judge(lang, test, retrieval_samples(train, test, 5)),
    }
    for w, label in ((0.0, "model alone"), (weight, "chosen on held-out"), (1e3, "retrieval order")):
        rows[f"rerank w={w:g} ({label})"] = ml.judge(lang, test, {t: rr.ranked(p, w)[:5] for t, p in pool.items()})
    result = {
        "command": "python benchmarks/bash_rerank.py " + shlex.join(sys.argv[1:]),
        "machine": machine_info(),
        "seed": args.seed,
        "run": args.run,
        "held_rows": len(held),
        "test_rows": len(test),
        "weight": weight,
        "held_cms@1_by_weight": grid,
        "rows": rows,
        "wall_s": round(time.monotonic() - started, 1),
    }
    md = [
        header_md("Retrieve-then-rerank on Bash (#18, not the paper's setting)", result["command"], result["machine"]),
        f"Run `{args.run}`; pools: {args.k} retrieved commands" + (" + the run's 5 beams" if args.beams else "")
        + f"; {len(test)} seeded test rows of the paper split, seed {args.seed}; wall {result['wall_s']} s.",
        "",
        "Held-out CMS@1 by weight (chooses the weight): "
        + ", ".join(f"{w:g}: {100 * v:.1f}" for w, v in grid.items()),
        "",
        md_table(["system", *keys], [[n, *(round(100 * r[k], 1) for k in keys)] for n, r in rows.items()]),
    ]  # fmt: skip
    write_results(args.name, result, "\n".join(md))
    print("\n".join(md[-1:]))


if __name__ == "__main__":
    main()
