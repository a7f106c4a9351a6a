"""How CodeFusion ranks its candidates, judged on the rows a run held out of its training (#18).

After a multi-step reverse loop the final ``x_0`` sits on the token manifold, so D+H are confident about every
draw and the ``final`` score (their mean token log-probability) barely orders them; the ``denoise`` score
re-noises each candidate and asks how well one denoising step given the request reconstructs it
(nl2code.sampling.diffusion.DiffusionSampler). This script samples the same draws at each of ``--steps`` and
judges the first 5 under each score, on up to ``--limit`` seeded rows of the run's held-out part
(``data.eval_fraction``), never on test rows, so the choice it informs is not made on the test split; the
constant answer and TF-IDF retrieval over the run's training rows are judged on the same rows.

    python benchmarks/codefusion_ranking.py --run RUN_DIR --language bash --steps 1,20 --scores final,denoise
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from _common import RESULTS, machine_info, md_table, write_results
from bash_baselines import retrieval_samples
from matched_langs import LANGUAGES, UNSCALED, constant_answer, judge_variants
from matched_mbr import draw, held_out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a finished CodeFusion run directory")
    p.add_argument("--language", choices=sorted(LANGUAGES), default="bash")
    p.add_argument("--steps", default="1,20", help="reverse steps to sample with (1 = one x0 prediction)")
    p.add_argument("--scores", default="final,denoise", help="candidate scores to rank by (final, denoise)")
    p.add_argument("--limit", type=int, default=500, help="held-out rows judged, a seeded sample (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the row sample and of the sampling noise")
    p.add_argument("--gen-batch", type=int, default=512, help="sequences sampled together")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (0 = PyTorch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--name", default="codefusion_ranking")
    args = p.parse_args()

    import torch

    from nl2code.api import GenerationConfig, load_run
    from nl2code.generation.diffusion import DiffusionGenerator

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.monotonic()
    run = load_run(Path(args.run), args.device)
    run.model.eval()
    train, rows = held_out(run, args.limit, args.seed, f"{run.run_dir}: nothing to judge on")
    lang, gen = LANGUAGES[args.language], DiffusionGenerator(run)
    results: dict[str, dict] = {}
    # the baselines on the same rows: the constant answer and TF-IDF retrieval over the run's own training rows
    baselines = {"constant": {t: [constant_answer(lang, train)] for t in rows},
                 "tfidf": retrieval_samples(train, rows, lang.pool)}  # fmt: skip
    for base, samples in baselines.items():
        for suffix, scores in judge_variants(lang, rows, samples).items():
            results[f"baseline: {base}{suffix}"] = {**scores, "sample_s": 0.0}
    for steps in [int(s) for s in args.steps.split(",")]:
        for score in args.scores.split(","):
            cfg = GenerationConfig(n=5, seed=args.seed, steps=steps, batch_size=args.gen_batch, score=score)
            samples, seconds = draw(gen, cfg, rows)
            for suffix, scores in judge_variants(lang, rows, samples).items():
                results[f"{steps} steps, {score} score{suffix}"] = {**scores, "sample_s": seconds}
            plain = results[f"{steps} steps, {score} score"]
            print(f"{steps} steps, {score}: " + json.dumps({k: round(v, 3) for k, v in plain.items()}))
    metrics = [m for m in next(iter(results.values())) if m != "sample_s"]
    table = md_table(
        ["sampling", *metrics, "sample s"],
        [[label, *(round(v[m] * (1 if m in UNSCALED else 100), 1) for m in metrics), v["sample_s"]]
         for label, v in results.items()],
    )  # fmt: skip
    command = "python benchmarks/codefusion_ranking.py " + shlex.join(sys.argv[1:])
    wall = round(time.monotonic() - started, 1)
    data = {"command": command, "machine": machine_info(), "seed": args.seed, "run": args.run, "rows": len(rows),
            "wall_s": wall, "results": results}  # fmt: skip
    md = (
        f"# CodeFusion candidate ranking on held-out rows ({args.language})\n\n"
        f"Run `{args.run}`; {len(rows)} seeded rows it held out of training (seed {args.seed}); 5 draws per row, "
        f"judged first 5. Regenerate with `{command}`.\n\n{json.dumps(data['machine'])}; wall {wall} s.\n\n{table}\n"
    )
    write_results(args.name, data, md, Path(args.out))


if __name__ == "__main__":
    main()
