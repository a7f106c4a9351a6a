"""The AR baseline on CodeFusion's Bash benchmark, next to the constant and TF-IDF retrieval baselines.

    .venv/bin/python benchmarks/ar_bash.py [--configs bash_cpu,bash_cpu_rag] [--limit 500] [--seed 0]
        [--work-dir /tmp/ar] [--diag-generate 100]

For each ``configs/codegen/<name>.yaml``: train it into ``WORK/<name>`` with ``nl2code train`` on one
thread (skipped when the run directory already holds a finished run), then 5 candidates per test
utterance by 5-beam search (``temperature 0, n 5``, stop at the end of the line, 64 new tokens) on a
seeded random sample of ``--limit`` rows of the paper's test split (never a prefix: the split is
sorted by topic), judged by the ``codefusion-bash`` task (CMS and template accuracy @1/3/5, the
code ``nl2code eval codefusion-bash`` runs; the samples are also written as JSONL for it), and the
NL-conditioning diagnostics (``benchmarks/ar_diagnostics.py``) on the run's held-out training pairs.
The constant and TF-IDF retrieval baselines are scored on the same rows.

Writes ``benchmarks/results/ar_bash.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, header_md, load_average, machine_info, md_table, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BENCH = DATA / "codefusion" / "benchmarks" / "BashBenchmarks.json"
KS = [1, 3, 5]
DIAG_VERSION = 2  # 2: the diagnostics' targets keep the command's trailing newline, as training does
# The same baselines on the full 2,522-row split (benchmarks/results/bash_baselines.md), percent.
FULL_SPLIT = {
    "constant": {"cms@1": 42.2, "cms@3": 42.2, "cms@5": 42.2, "template_match@1": 5.6, "template_match@5": 5.6},
    "tfidf": {
        "cms@1": 51.5,
        "cms@3": 64.0,
        "cms@5": 68.3,
        "template_match@1": 14.5,
        "template_match@3": 20.8,
        "template_match@5": 23.8,
    },
}


def train(config: Path, run_dir: Path, log: Path, wait: bool = False) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` unless it is already finished (``wait``: poll until a run
    started elsewhere finishes instead); its wall time and last held-out loss from metrics.jsonl."""
    while wait and not (run_dir / "model.safetensors").is_file():
        time.sleep(20)
    if not (run_dir / "model.safetensors").is_file():
        cmd = [sys.executable, "-m", "nl2code", "train", str(config), "--run-dir", str(run_dir)]
        if (run_dir / "config.yaml").is_file():
            cmd.append("--resume")
        env = dict(os.environ, OMP_NUM_THREADS="1")
        with open(log, "a") as f:
            rc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
        if rc:
            sys.exit(f"training failed ({rc}), see {log}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = [r for r in rows if "elapsed_s" in r]
    evals = [r for r in rows if any(k.startswith("eval") for k in r)]
    return {
        "elapsed_s": last[-1]["elapsed_s"] if last else None,
        "steps": last[-1].get("step") if last else None,
        "last_eval": evals[-1] if evals else None,
    }


def sample_problems(limit: int, seed: int) -> dict[str, Any]:
    from nl2code.eval.tasks import get_task

    problems = get_task("codefusion-bash").load_problems(str(BENCH))
    if limit and limit < len(problems):
        keys = list(problems)
        chosen = set(random.Random(seed).sample(keys, limit))
        problems = {k: problems[k] for k in keys if k in chosen}
    return problems


def judge(problems: dict[str, Any], samples: dict[str, list[str]]) -> dict[str, float]:
    from nl2code.eval.tasks import EvalContext, get_task

    res = get_task("codefusion-bash").judge(problems, samples, EvalContext(ks=KS, workers=1, progress=False))
    keep = [f"{m}@{k}" for m in ("cms", "template_match", "command_match") for k in KS]
    return {m: res.metrics[m] for m in keep}


def generate(run_dir: Path, problems: dict[str, Any], out: Path, seed: int) -> tuple[dict[str, list[str]], float]:
    """5-beam candidates for every problem, written as ``nl2code generate`` JSONL rows to ``out``."""
    from nl2code.api import GenerationConfig, load_run
    from nl2code.generation.autoregressive import ARGenerator

    run = load_run(run_dir)
    run.model.eval()
    gen = ARGenerator(run)
    cfg = GenerationConfig(n=5, temperature=0.0, max_new_tokens=64, stop=("\n",), seed=seed, batch_size=32)
    ids = list(problems)
    start = time.monotonic()
    cands = gen.generate([problems[i].nl for i in ids], cfg)
    wall = time.monotonic() - start
    samples = {i: [c.text for c in cs] for i, cs in zip(ids, cands, strict=True)}
    with open(out, "w") as f:
        for i, cs in zip(ids, cands, strict=True):
            for rank, c in enumerate(cs):
                row = {"task_id": i, "prompt": problems[i].nl, "rank": rank, "completion": c.text, "score": c.score}
                f.write(json.dumps(row) + "\n")
    return samples, wall


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ar_diagnostics import diagnose
    from bash_baselines import CONSTANT, retrieval_samples

    from nl2code.data.sources import load_source

    problems = sample_problems(args.limit, args.seed)
    train_recs = [r for r in load_source("codefusion-bash", str(BENCH)).records if r.split == "train"]
    result: dict[str, Any] = {"rows": len(problems), "limit": args.limit, "seed": args.seed, "systems": {}}
    result["systems"]["constant"] = {"metrics": judge(problems, {t: [CONSTANT] for t in problems})}
    result["systems"]["tfidf"] = {"metrics": judge(problems, retrieval_samples(train_recs, problems, max(KS)))}
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    names = [(n, False) for n in args.configs.split(",") if n] + [(n, True) for n in args.continued.split(",") if n]
    for name, continued in names:
        config = REPO / "configs" / "codegen" / f"{name.removesuffix('_more')}.yaml"
        run_dir = work / name
        info = train(config, run_dir, work / f"{name}.train.log", wait=args.wait or continued)
        cache = work / f"{name}.eval.json"
        key = [str(problems.keys()), args.seed, args.diag_generate, (run_dir / "model.safetensors").stat().st_mtime]
        if cache.is_file() and json.loads(cache.read_text())["key"] == json.loads(json.dumps(key)):
            saved = json.loads(cache.read_text())  # this run, these rows: generated and diagnosed already
            samples, gen_s, diag = saved["samples"], saved["generate_s"], saved["diagnostics"]
            if saved.get("diag_version") != DIAG_VERSION:
                diag = saved["diagnostics"] = diagnose(run_dir, "heldout", None, args.diag_generate, args.seed)
                saved["diag_version"] = DIAG_VERSION
                cache.write_text(json.dumps(saved))
        else:
            samples, gen_s = generate(run_dir, problems, work / f"{name}.samples.jsonl", args.seed)
            diag = diagnose(run_dir, "heldout", None, args.diag_generate, args.seed)
            saved = {
                "key": key,
                "samples": samples,
                "generate_s": gen_s,
                "diagnostics": diag,
                "diag_version": DIAG_VERSION,
            }
            cache.write_text(json.dumps(saved))
        if continued:
            import yaml

            info["init_from"] = yaml.safe_load((run_dir / "config.yaml").read_text()).get("init_from")
        result["systems"][name] = {
            "config": str(config.relative_to(REPO)),
            "metrics": judge(problems, samples),
            "train": info,
            "generate_s": round(gen_s, 1),
            "samples": str(work / f"{name}.samples.jsonl"),
            "diagnostics": diag,
            "examples": [
                {"nl": problems[t].nl.strip(), "gold": problems[t].code.strip(), "top3": samples[t][:3]}
                for t in list(problems)[:4]
            ],
        }
    return result


RECIPE = [
    "**Why the issue's model ignored the NL.** Its prompt layout is right (training and generation both use "
    "`NL <sep>`, the utterance keeps its trailing newline in both, nothing is truncated: 22 of 10,085 pairs are "
    "over 128 tokens and dropped) and its loss is on the command only (`data.loss_on: code`). What it lacks is "
    "steps on the pairs: `configs/codegen/bash.yaml` at 400 + 400 steps spends half its minutes on BashSnippets "
    "(code only, no NL) and sees the 10k pairs 1.3 times at a fine-tuning lr of 5e-4. An AR model first learns the "
    "language of the commands and only later the mapping from the NL: `ar_diagnostics.py` on this recipe's "
    "checkpoint at step 80 (0.27 epochs) gives CE 4.129 with the true NL vs 4.246 shuffled (gap 0.12 nats, "
    "token accuracy 32.3 vs 31.3 %, greedy exact 0 / 50) and its beams are `find . -type f -type f ...` for every "
    "request, the issue's symptom; the table above shows the gap once the pairs have been seen ~2 times.",
    "**Findings.** (1) Epochs over the pairs are what the NL conditioning needs: the NL gap grows from 0.12 nats "
    "(step 80) to ~1 nat (700 steps, 2.3 epochs) and further with 500 more steps (table), and every score with it. "
    "(2) On this budget the AR model does not reach the retrieval baseline: paper-faithful it stays below the "
    "constant on CMS@1; retrieval augmentation helps most (template@1 3-4x the plain run at each budget) "
    "but the RAG model still scores below simply returning the command it was shown (TF-IDF top-1): it has not "
    "yet learned to copy and edit within ~2-3 epochs. (3) The continued rows show both still improving when "
    "stopped: the budget, not a bug, is the limit now.",
    "**Pairs only, no snippet pre-training** (`bash_cpu.yaml`): on a ~20-minute budget every pre-training step is "
    "a step not spent on the pairs, and the NL gap only opens with epochs over the pairs (above). A split of the "
    "same minutes between snippets and pairs was not measured in this session (CPU-bound: see 'remains').",
    "**Loss on the command only** (`data.loss_on: code`): the NL is given at test time, never predicted; the "
    "learning test (`tests/sampling/test_ar_learning.py`) reaches >= 90 % exact match on 64 pairs with it "
    "(shuffled NL: <= 10 %). Loss on the NL too was not compared here.",
    "**4 layers x 256 (4.2M parameters, tokenizer 4,096 BPE trained on the pairs), dropout 0**: the smaller depth "
    "gives ~1.3x the steps of the 6-layer 5.8M model in the same minutes; with < 3 epochs there is nothing to "
    "regularise yet. lr 1e-3 (peak) with 100 warm-up steps, cosine to 5e-5, batch 32.",
    "**bf16 autocast on CPU** (`train.precision: bf16`; the CPU has avx512_bf16): 40 steps from the same init "
    "gave the same loss as fp32 (5.8977 vs 5.8978) at 1,000-1,478 vs 540-1,014 tok/s (busy box, noisy): kept.",
    "**Budget.** Measured on the busy shared 2-core box (2-4 other training jobs): 300-520 tok/s, so the 700 "
    "steps took the minutes in the table instead of ~15 on an idle thread; the RAG run's rows are ~1.4x longer "
    "(one retrieved command), so it gets 500 steps.",
    "**Retrieval augmentation** (`bash_cpu_rag.yaml`, `objective.retrieval_k: 1`): the prompt is "
    "`cmd \\n <eom> NL <sep>` with cmd the command of the nearest train utterance by TF-IDF "
    "(nl2code.data.retrieval, the same index as the TF-IDF baseline; a training row never retrieves itself, test "
    "rows are not in the index). k = 1 rather than 3 for the budget: 3 commands made rows 2.2x longer.",
]


def markdown(result: dict[str, Any], command: str, machine: dict[str, Any]) -> str:
    notes = [
        f"CodeFusion Bash benchmark ({BENCH}), a seeded random sample of {result['rows']} test rows "
        f"(seed {result['seed']}; `random.Random(seed).sample` of the task ids, in file order). Scores in percent; "
        "CMS = command match score, template = exact template accuracy, command = whitespace-normalised match; "
        "best of the first k candidates. AR candidates: 5-beam search.",
        "The constant and TF-IDF rows are scored on the same sampled rows; the full-split values "
        "(benchmarks/results/bash_baselines.md) are listed below them for scale.",
        f"Wall time {result['wall_s']} s for this invocation (runs, samples and diagnostics already in the work "
        "directory are reused; training and sampling times per run are in the second table).",
        "Runs: `nl2code train configs/codegen/NAME.yaml --run-dir WORK/NAME` on one thread (OMP_NUM_THREADS=1, "
        "seed 0); the continued rows: `nl2code train configs/codegen/NAME.yaml --run-dir WORK/NAME_more "
        "init_from=WORK/NAME train.max_steps=500 (RAG: 350) train.lr=5e-4 train.warmup_steps=20 "
        "train.eval_every=250`. All four ran two at a time on the shared 2-core box next to 2-4 other jobs.",
    ]
    heads = ["system", "CMS@1", "CMS@3", "CMS@5", "template@1", "template@3", "template@5", "command@1"]
    rows = []

    def row(label: str, m: dict[str, float], scale: float = 100.0) -> list[str]:
        def f(key: str) -> str:
            return f"{scale * m[key]:.1f}" if key in m else ""

        return [label] + [f(f"cms@{k}") for k in KS] + [f(f"template_match@{k}") for k in KS] + [f("command_match@1")]

    for name, s in result["systems"].items():
        label = name + (" (retrieval-augmented, not paper-faithful)" if "rag" in name else "")
        if s.get("train", {}).get("init_from"):
            label += f", continued: {name.removesuffix('_more')} + {s['train']['steps']} steps"
        rows.append(row(label, s["metrics"]))
    for name, m in FULL_SPLIT.items():
        rows.append(row(f"{name}, full split (2,522)", m, 1.0))
    lines = [
        header_md("AR baseline on CodeFusion's Bash benchmark", command, machine, notes),
        "",
        md_table(heads, rows),
    ]
    lines += ["", "## Training and NL conditioning (held-out training pairs)", ""]
    dheads = [
        "system",
        "train wall s",
        "steps",
        "generate s",
        "CE true",
        "CE shuffled",
        "CE empty",
        "gap (nats)",
        "tok acc true %",
        "tok acc shuffled %",
        "greedy EM true %",
        "greedy EM shuffled %",
    ]
    drows = []
    for name, s in result["systems"].items():
        if "diagnostics" not in s:
            continue
        c = s["diagnostics"]["conditions"]
        drows.append(
            [
                name,
                s["train"]["elapsed_s"],
                s["train"]["steps"],
                s["generate_s"],
                f"{c['true']['ce']:.3f}",
                f"{c['shuffled']['ce']:.3f}",
                f"{c['empty']['ce']:.3f}",
                f"{s['diagnostics']['nl_gap_ce']:.3f}",
                f"{100 * c['true']['token_acc']:.1f}",
                f"{100 * c['shuffled']['token_acc']:.1f}",
                f"{100 * c['true'].get('exact_match', float('nan')):.1f}",
                f"{100 * c['shuffled'].get('exact_match', float('nan')):.1f}",
            ]
        )
    lines.append(md_table(dheads, drows))
    lines += ["", "## Recipe: choices and the measurements behind them", ""] + [f"- {r}" for r in RECIPE]
    lines += ["", "## Examples (first sampled rows)"]
    for name, s in result["systems"].items():
        for ex in s.get("examples", []):
            lines.append(
                f"\n- {name} | NL: {ex['nl']}\n  - gold: `{ex['gold']}`\n  - top-3: "
                + " · ".join(f"`{c}`" for c in ex["top3"])
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="bash_cpu,bash_cpu_rag", help="comma-separated configs/codegen/ names")
    ap.add_argument("--limit", type=int, default=500, help="seeded random sample of N test rows (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-dir", default="/tmp/ar", help="run directories and samples (reused when finished)")
    ap.add_argument("--diag-generate", type=int, default=100, help="greedy exact match on N held-out pairs")
    ap.add_argument(
        "--continued",
        default="",
        help="run directories WORK/NAME_more that continue WORK/NAME (trained elsewhere: nl2code train "
        "configs/codegen/NAME.yaml --run-dir WORK/NAME_more init_from=WORK/NAME ...); evaluated once finished",
    )
    ap.add_argument("--wait", action="store_true", help="wait for runs being trained elsewhere instead of training")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    command = "python benchmarks/ar_bash.py " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = machine_info()
    start = time.monotonic()
    result = run(args)
    result["wall_s"] = round(time.monotonic() - start, 1)
    machine["load_after"] = load_average()
    result["command"], result["machine"] = command, machine
    kwargs = {"out": args.out} if args.out else {}
    path = write_results("ar_bash", result, markdown(result, command, machine), **kwargs)
    print(path.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
