"""CodeFusion results in one command: train, sample 5 candidates per test utterance, judge, and compare
with the matched autoregressive baseline.

    .venv/bin/python benchmarks/codefusion_results.py [--minutes M | --stage-steps N] [--quick]
        [--languages bash,cf,python] [--limit N] [--steps S]

Per language: train ``configs/codefusion/<lang>.yaml`` (pre-training stages, then fine-tuning on the
benchmark's train split), sample ``-n 5`` candidates per test utterance with ``--steps`` denoising
steps, and judge them with the evaluation harness task (``codefusion-bash``: template match and the
command match score, CMS, the metric of the paper's Bash numbers;
``codefusion-cf``: execution match; ``codefusion-python``: BLEU / exact match), at the middle and the
end of fine-tuning. For Bash, also on a split grouped by command (every pair whose command string is
in the test part is test: no test command occurs in train), fine-tuned from the same pre-trained
weights. The AR baseline (``configs/codegen/<lang>.yaml``) gets the same number of training sequences
per phase (pre-training: 2 x N steps, because CodeFusion has two pre-training stages of N; fine-tuning:
N steps; both batch 32), and its 5 candidates are 5-beam search.

Writes ``benchmarks/results/codefusion_results.{md,json}``; run directories go under ``--work-dir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from nl2code.config import read_yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "codefusion" / "benchmarks"
LANGS = {  # language -> (eval task, benchmark file, headline metric)
    "bash": ("codefusion-bash", "BashBenchmarks.json", "template_match"),
    "cf": ("codefusion-cf", "CFRuleBenchmarks.json", "execution_match"),
    "python": ("codefusion-python", "PythonBenchmarks.json", "exact_match"),
}
PAPER = {  # codefusion.md §7, Table 1 (secondary sources); Python is CodeBERTScore, not comparable to EM/BLEU
    # Bash: the NL2Bash command match score (CMS, the README's "TM"), not template accuracy (issue #17)
    "bash": {"metric": "CMS, command match score", "top1": 66.7, "top5": 72.0},
    "cf": {"metric": "execution match", "top1": 72.8, "top5": 78.5},
    "python": {"metric": "CodeBERTScore", "top1": 80.7, "top5": 90.3},
}
SEC_PER_STEP = 0.65  # codefusion-mini, batch 32, 1 thread, 2 such jobs on a 2-core box (measured; for --minutes)
GROUPED_TEST_FRACTION = 0.2


def sh(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` from the repository root, output to ``log``; returns its wall time."""
    start = time.time()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        sys.exit(f"command failed ({rc}): {shlex.join(cmd)} (see {log})")
    return time.time() - start


def write_config(base: Path, out: Path, edit: Any) -> Path:
    cfg = read_yaml(base)
    edit(cfg)
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def train(config: Path, run_dir: Path, log: Path) -> float:
    if (run_dir / "model.safetensors").is_file():
        return json.loads((run_dir / "wall.json").read_text())["wall_s"]
    if run_dir.exists():
        shutil.rmtree(run_dir)
    wall = sh([sys.executable, "-m", "nl2code", "train", str(config), "--run-dir", str(run_dir)], log)
    (run_dir / "wall.json").write_text(json.dumps({"wall_s": wall}))
    return wall


def pretrained_dir(run_dir: Path, stage: str, out: Path) -> Path:
    """A run directory holding ``stage``'s final weights, for ``init_from``."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "config.yaml", out / "config.yaml")
    shutil.copytree(run_dir / "tokenizer", out / "tokenizer", dirs_exist_ok=True)
    shutil.copyfile(run_dir / "stages" / stage / "model.safetensors", out / "model.safetensors")
    return out


def grouped_pairs(path: Path, out: Path, task: str = "codefusion-bash") -> dict[str, Any]:
    """Re-split all of a benchmark's pairs by program string (a hash of the program decides); writes JSONL
    rows that keep each record's extras (a CF rule's table), so the ``jsonl`` source reads them back."""
    from nl2code.data.sources import load_source

    recs = load_source(task, path).records
    rows, counts = [], {"train": 0, "test": 0}
    for r in recs:
        key = r.code.strip().encode("utf-8")
        h = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64
        split = "test" if h < GROUPED_TEST_FRACTION else "train"
        counts[split] += 1
        own = {"task_id": r.task_id, "nl": r.nl, "code": r.code, "language": r.language, "split": split}
        rows.append({**r.extras, **own})
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    train_cmds = {row["code"].strip() for row in rows if row["split"] == "train"}
    leaked = sum(row["code"].strip() in train_cmds for row in rows if row["split"] == "test")
    return {**counts, "test_commands_in_train": leaked}


def checkpoints(run_dir: Path, stage: str) -> list[tuple[int, Path]]:
    """(step, weights) of the stage's kept checkpoints (the last one is the final weights)."""
    root = run_dir / "stages" / stage
    out = [(int(p.name.split("_")[1]), p / "model.safetensors") for p in sorted((root / "checkpoints").glob("step_*"))]
    return out


def stage_elapsed(run_dir: Path) -> dict[str, float]:
    """Seconds each stage's loop ran, from the last ``elapsed_s`` of its metrics rows."""
    out: dict[str, float] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "elapsed_s" in row:
            out[row.get("stage", "main")] = row["elapsed_s"]
    return out


def evaluate(
    run_dir: Path, weights: Path, problems: dict, task: Any, args: argparse.Namespace, rounding: str | None = None
) -> dict[str, Any]:
    """Sample 5 candidates per problem with the weights, judge them; metrics + sampling wall time."""
    from safetensors.torch import load_model

    from nl2code.api import GenerationConfig, load_run
    from nl2code.eval.tasks import EvalContext

    run = load_run(run_dir)
    load_model(run.model, str(weights), strict=True, device="cpu")
    run.model.eval()
    kind = getattr(type(run.config.model), "kind", "")
    if kind == "codefusion":
        from nl2code.generation.diffusion import DiffusionGenerator

        gen: Any = DiffusionGenerator(run, rounding=rounding)
        cfg = GenerationConfig(n=5, seed=args.seed, steps=args.steps, batch_size=args.batch_size)
    else:
        from nl2code.generation.autoregressive import ARGenerator

        gen = ARGenerator(run)
        cfg = GenerationConfig(n=5, seed=args.seed, max_new_tokens=64, stop=("\n",), batch_size=args.batch_size)
    ids = list(problems)
    start = time.time()
    cands = gen.generate([problems[i].nl for i in ids], cfg)
    sample_s = time.time() - start
    samples = {i: [c.text for c in cs] for i, cs in zip(ids, cands, strict=True)}
    result = task.judge(problems, samples, EvalContext(ks=[1, 3, 5], workers=1, progress=False))
    examples = [{"nl": problems[i].nl, "gold": problems[i].code, "top3": samples[i][:3]} for i in ids[:3]]
    out = {"metrics": result.metrics, "sample_s": round(sample_s, 1), "problems": len(ids), "examples": examples}
    return out | ({"rounding": gen.rounding} if kind == "codefusion" else {})


def subset(problems: dict, limit: int | None, seed: int = 0) -> dict:
    """``limit`` problems drawn at random with ``seed`` (the run's ``--seed``, recorded in its settings), in
    file order; never a prefix or a regular stride (the Bash test split's file order is sorted by topic:
    its first 400 rows are 99 % ``find`` commands)."""
    if limit is None or limit >= len(problems):
        return problems
    keys = list(problems)
    chosen = set(random.Random(seed).sample(keys, limit))
    return {k: problems[k] for k in keys if k in chosen}


def run_language(lang: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from nl2code.data.sources import load_source
    from nl2code.eval.tasks import get_task

    task_name, data_file, _ = LANGS[lang]
    task = get_task(task_name)
    data = DATA / data_file
    n = args.stage_steps
    ckpt = max(1, n // 2)

    def cf_edit(cfg: dict) -> None:
        cfg["train"].update(
            max_steps=n,
            ckpt_every=ckpt,
            keep_last=2,
            eval_every=0,
            sample_every=0,
            tensorboard=False,
            progress="lines",
            seed=args.seed,
        )

    n_pre = max(1, round(n * args.pretrain_fraction))

    def cf_pre_edit(cfg: dict) -> None:
        cf_edit(cfg)
        for stage in cfg.get("stages", []):
            if stage["name"] != "finetune":
                stage.setdefault("train", {})["max_steps"] = n_pre

    def ar_edit(cfg: dict) -> None:
        cf_edit(cfg)
        cfg["stages"][0].setdefault("train", {})["max_steps"] = 2 * n_pre  # = CodeFusion's two pre-training stages

    roundings = [r.strip() for r in args.rounding.split(",")] if args.rounding else [None]
    out: dict[str, Any] = {"task": task_name, "runs": {}}
    problems = subset(task.load_problems(str(data)), args.limit, args.seed)
    systems = [("codefusion", REPO / "configs" / "codefusion" / f"{lang}.yaml", cf_pre_edit, "pretrain_cpd")]
    if not args.skip_ar:
        systems.append(("ar_baseline", REPO / "configs" / "codegen" / f"{lang}.yaml", ar_edit, "pretrain"))
    for name, base, edit, last_pretrain in systems:
        run_dir = work / f"{name}-{lang}"
        config = write_config(base, work / f"{name}-{lang}.yaml", edit)
        wall = train(config, run_dir, work / f"{name}-{lang}.train.log")
        elapsed = stage_elapsed(run_dir)
        pre_s = sum(v for k, v in elapsed.items() if k != "finetune")
        entry: dict[str, Any] = {
            "config": str(config.relative_to(REPO)),
            "train_wall_s": round(wall, 1),
            "stage_loop_s": {k: round(v, 1) for k, v in elapsed.items()},
            "evals": [],
        }
        for step, weights in checkpoints(run_dir, "finetune"):
            minutes = (pre_s + elapsed.get("finetune", 0) * step / n) / 60
            # Every rounding on the final weights; the paper's (the first) on the earlier checkpoints.
            for rounding in roundings if step == n or name != "codefusion" else roundings[:1]:
                res = evaluate(run_dir, weights, problems, task, args, rounding if name == "codefusion" else None)
                res.update(finetune_step=step, approx_train_min=round(minutes, 1))
                entry["evals"].append(res)
                print(f"[{lang}] {name} finetune step {step} {rounding}: {fmt_metrics(res['metrics'])}", flush=True)
                if name != "codefusion":
                    break
        if lang == "bash" and not args.skip_grouped:
            jsonl = work / "bash_grouped.jsonl"
            entry_split = grouped_pairs(data, jsonl)
            init = pretrained_dir(run_dir, last_pretrain, work / f"{name}-bash-pretrained")

            def g_edit(cfg: dict, e: Any = cf_edit, init: Path = init, jsonl: Path = jsonl) -> None:
                e(cfg)  # the fine-tuning stage's settings: the top-level train block, N steps
                for key in ("model", "objective", "tokenizer", "stages"):
                    cfg.pop(key, None)
                cfg["init_from"] = str(init)
                cfg["data"].update(source="jsonl", path=str(jsonl), split="train", eval_split=None)

            g_run = work / f"{name}-bash-grouped"
            g_wall = train(
                write_config(base, work / f"{name}-bash-grouped.yaml", g_edit),
                g_run,
                work / f"{name}-bash-grouped.train.log",
            )
            g_recs = [r for r in load_source("jsonl", jsonl).records if r.split == "test"]
            g_problems = subset({r.task_id: dataclasses.replace(r) for r in g_recs}, args.limit, args.seed)
            res = evaluate(g_run, g_run / "model.safetensors", g_problems, task, args, roundings[0])
            res.update(split=entry_split, finetune_wall_s=round(g_wall, 1))
            entry["grouped_split"] = res
            print(f"[bash] {name} grouped split: {fmt_metrics(res['metrics'])}", flush=True)
        out["runs"][name] = entry
    return out


def fmt_metrics(m: dict[str, float]) -> str:
    keys = [k for k in m if "@" in k and not k.startswith(("nlc2cmd", "command_match", "execution_match_nonempty"))]
    keys += [k for k in ("bleu", "syntax_valid", "diversity_distinct_2", "diversity_edit_distance") if k in m]
    return ", ".join(f"{k} {m[k]:.3f}" if m[k] <= 1.5 else f"{k} {m[k]:.1f}" for k in keys)


def other_metrics(m: dict[str, float]) -> str:
    """The secondary numbers of a row: BLEU (Python), execution match on tables with data rows (CF; on a
    header-only table every rule that runs "matches"), command match (Bash: the utilities alone)."""
    if "bleu" in m:
        return f"BLEU {m['bleu']:.1f}"
    if "execution_match_nonempty@1" in m:
        return f"with data: {100 * m['execution_match_nonempty@1']:.1f} / {100 * m['execution_match_nonempty@5']:.1f}"
    if "command_match@1" in m:
        return f"command: {100 * m['command_match@1']:.1f} / {100 * m['command_match@5']:.1f}"
    return ""


def preset_table() -> list[str]:
    """Parameters per component of every CodeFusion preset (meta device: no memory, no init)."""
    from nl2code.models.codefusion import PRESETS, preset_parameter_counts

    parts = ["encoder", "code_embedding", "denoiser", "decoder", "head", "total"]
    lines = [
        "## Presets: parameters per component",
        "",
        "With CodeT5's 32,100-token vocabulary (the paper's) and with the 4,096 of configs/codefusion/bash.yaml; "
        "H is tied to L, so it adds only its bias.",
        "",
        "| preset | vocab | " + " | ".join(parts) + " |",
        "|" + "---|" * (len(parts) + 2),
    ]
    for name in PRESETS:
        for vocab in (32100, 4096):
            counts = preset_parameter_counts(name, vocab)
            lines.append(f"| {name} | {vocab:,} | " + " | ".join(f"{counts[k]:,}" for k in parts) + " |")
    return [*lines, ""]


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# CodeFusion results (nl2code)" + ("" if report["settings"]["skip_ar"] else " vs the matched AR baseline"),
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; machine: {report['machine']}; "
        f"load average at start {report['load_start']}, at end {report['load_end']}; total wall "
        f"{report['wall_min']} min.  ",
        f"Settings: {json.dumps(report['settings'])}",
        "",
        "Top-k = any of the first k of 5 ranked candidates correct (ranked by mean token log-probability, "
        "never by the reference). Percentages. `train min` = approximate training minutes when the "
        "evaluated weights were saved (pre-training loops + the fine-tuning share).",
        "",
    ]
    for lang, res in report["languages"].items():
        paper = PAPER[lang]
        metric = LANGS[lang][2]
        cms = lang == "bash"  # CMS columns: the paper's Bash numbers are CMS
        lines += [
            f"## {lang} ({res['task']})",
            "",
            f"Paper (CodeFusion 75M, {paper['metric']}): top-1 {paper['top1']}, top-5 {paper['top5']}."
            + (
                " Compare them with the cms columns; template_match (exact template accuracy) is stricter."
                if cms
                else ""
            ),
            "",
            f"| system | split | finetune step | train min | rounding | {metric}@1 | @3 | @5 | "
            + ("cms@1 | @3 | @5 | " if cms else "")
            + "syntax valid | distinct-2 | edit dist. | other | sample s |",
            "|" + "---|" * (16 if cms else 13),
        ]
        notes: list[str] = []
        for name, entry in res["runs"].items():
            rows = [("paper test", e) for e in entry["evals"]]
            if "grouped_split" in entry:
                rows.append(("grouped by command", entry["grouped_split"]))
            for split, e in rows:
                m = e["metrics"]
                other = other_metrics(m)
                step = e.get("finetune_step", "final")
                lines.append(
                    f"| {name} | {split} ({e['problems']}) | {step} | {e.get('approx_train_min', '')} | "
                    f"{e.get('rounding', '')} | "
                    + " | ".join(f"{100 * m.get(f'{metric}@{k}', 0):.1f}" for k in (1, 3, 5))
                    + "".join(
                        f" | {100 * m[f'cms@{k}']:.1f}" if f"cms@{k}" in m else " | n/a"  # n/a: run before CMS
                        for k in ((1, 3, 5) if cms else ())
                    )
                    + f" | {100 * m.get('syntax_valid', 0):.1f} | {m.get('diversity_distinct_2', 0):.2f} | "
                    f"{m.get('diversity_edit_distance', 0):.2f} | {other} | {e['sample_s']} |"
                )
            notes.append(
                f"- {name}: config `{entry['config']}`, training wall {entry['train_wall_s']} s, "
                f"stage loops {entry['stage_loop_s']}."
            )
            if "grouped_split" in entry:
                notes.append(
                    f"- {name} grouped split: {entry['grouped_split']['split']}, fine-tuning wall "
                    f"{entry['grouped_split']['finetune_wall_s']} s."
                )
        lines += ["", *notes, ""]
        last = next(iter(res["runs"].values()))["evals"][-1]
        ex = last["examples"]
        lines += [f"Examples (CodeFusion, final weights, {last.get('rounding', '')} rounding, top-3):", ""]
        lines += [f"- `{x['nl'].strip()}` -> gold `{x['gold'].strip()}`; got {json.dumps(x['top3'])}" for x in ex]
        lines.append("")
    notes = list(report["notes"])
    limit = report["settings"].get("limit")
    if limit and not any("random sample" in n for n in notes):  # a report from before seeded sampling
        notes.append(f"Test items: {limit} per split, evenly spaced in file order (this run predates seeded sampling).")
    lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    lines += preset_table()
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--minutes",
        type=float,
        default=30.0,
        help="CodeFusion training budget of the Bash pipeline (default 30); sets --stage-steps from a measured "
        f"{SEC_PER_STEP} s/step, the real wall time is recorded",
    )
    p.add_argument("--stage-steps", type=int, help="CodeFusion fine-tuning steps N (overrides --minutes)")
    p.add_argument(
        "--pretrain-fraction", type=float, default=0.5, help="each pre-training stage runs this fraction of N steps"
    )
    p.add_argument("--jobs", type=int, default=1, help="languages run at once, one CPU thread each (default 1)")
    p.add_argument("--quick", action="store_true", help="30 steps per stage, 50 test items, 10 denoising steps")
    p.add_argument("--languages", default="bash,cf,python")
    p.add_argument("--limit", type=int, help="test items per split: a random sample seeded by --seed (default all)")
    p.add_argument("--steps", type=int, default=50, help="CodeFusion inference (denoising) steps (default 50)")
    p.add_argument(
        "--rounding",
        default=None,
        help="CodeFusion rounding(s), comma-separated (decoder, grounding, clamping, decoder_clamp); the first is "
        "used on every checkpoint, all on the final weights (default: the run's, decoder)",
    )
    p.add_argument("--batch-size", type=int, default=160, help="sequences sampled together")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-ar", action="store_true", help="no AR baseline")
    p.add_argument("--skip-grouped", action="store_true", help="no grouped-by-command Bash split")
    p.add_argument("--work-dir", default="runs/codefusion_results")
    p.add_argument("--out", default="benchmarks/results/codefusion_results")
    p.add_argument("--render", metavar="JSON", help="only rewrite the markdown of an earlier run's JSON report")
    args = p.parse_args()
    if args.render:
        report = json.loads(Path(args.render).read_text())
        Path(args.render).with_suffix(".md").write_text(markdown(report))
        print(f"wrote {Path(args.render).with_suffix('.md')}")
        return 0
    if args.quick:
        args.stage_steps = args.stage_steps or 30
        args.limit = args.limit or 50
        args.steps = 10
    if args.stage_steps is None:
        # Bash trains the most: two pre-training stages, fine-tuning, and the grouped split's fine-tuning.
        args.stage_steps = max(10, int(args.minutes * 60 / SEC_PER_STEP / (2 + 2 * args.pretrain_fraction)))
    langs = [s.strip() for s in args.languages.split(",") if s.strip()]
    bad = [lang for lang in langs if lang not in LANGS]
    if bad:
        p.error(f"unknown language(s) {bad}; known: {', '.join(LANGS)}")
    if not DATA.is_dir():
        p.error(f"shared data not found at {DATA}")
    import torch

    torch.set_num_threads(1)
    work = (REPO / args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    start, load_start = time.time(), [round(x, 2) for x in os.getloadavg()]
    report: dict[str, Any] = {
        "command": shlex.join([".venv/bin/python", "benchmarks/codefusion_results.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread per process",
        "load_start": load_start,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "work_dir")},
        "languages": {},
        "notes": [
            "Model: configs/codefusion/<lang>.yaml, the codefusion-mini shape (d_model 128, encoder/denoiser/decoder "
            "2/3/2 layers, diffusion width 16, code length 64; 2.4M parameters with a 4K vocabulary) with "
            "self-conditioning (not in the paper), not the paper's 75M; trained for minutes on one CPU core per "
            "language, far below the paper's hours on 4 V100s.",
            f"Training: pre-training stages of {round(args.stage_steps * args.pretrain_fraction)} steps each "
            f"(unconditional generation, then CPD), fine-tuning {args.stage_steps} steps; batch 32, AdamW lr 1e-3.",
            f"Inference: {args.steps} strided denoising steps (eta 1), not the paper's 1,200 (benchmarks/generation.md "
            "measures top-1 against the step count). Rounding 'decoder' is the paper's (D + H once after the last "
            "step); 'decoder_clamp' (ours) snaps every step's x_0 estimate to D + H's argmax tokens.",
            "Python: the paper reports CodeBERTScore; we report exact match and BLEU (no local CodeBERT encoder).",
            "Bash paper split leaks (747 of 2,522 test commands occur in train); the grouped split has none.",
        ],
    }
    if args.limit:
        report["notes"].append(
            f"Test items: a random sample of {args.limit} per split, seeded by --seed {args.seed}, in file order."
        )
    if not args.skip_ar:
        report["notes"].append(
            "AR baseline: configs/codegen/<lang>.yaml (5.8M parameters), same sequences per phase; 5 candidates = "
            "5-beam search, cut at the first newline."
        )
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    lock, done = threading.Lock(), {}

    def one(lang: str) -> None:
        res = run_language(lang, args, work)
        with lock:  # languages finish in any order; the report keeps the requested order
            done[lang] = res
            report["languages"] = {k: done[k] for k in langs if k in done}
            report["wall_min"] = round((time.time() - start) / 60, 1)
            report["load_end"] = [round(x, 2) for x in os.getloadavg()]
            out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
            out.with_suffix(".md").write_text(markdown(report))

    # One torch thread per job: each language's training runs in its own process, its sampling in
    # this process's thread (torch releases the GIL inside kernels).
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for f in [pool.submit(one, lang) for lang in langs]:
            f.result()
    print(f"wrote {out.with_suffix('.md')} and .json ({report['wall_min']} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
