"""CodeFusion and the AR baseline on Bash (or CF rules) at a matched wall-clock budget, beside the baselines (#18).

    python benchmarks/bash_matched.py [--language bash|cf] [--systems codefusion,codefusion_rag,ar,ar_rag]
        [--minutes 25]
        [--scale recipe|paper] [--split paper,grouped] [--limit 500] [--seed 0] [--steps 1,20]
        [--device cpu|cuda] [--parallel 2] [--threads 1] [--out DIR] [--tiny]

Per system and split: train its committed config for ``--minutes`` of training loop
(``train.max_minutes``: the cosine follows the clock, so each model gets the same minutes whatever its
speed), then 5 candidates per utterance on a seeded random sample of the test part (never a prefix),
judged by the ``codefusion-bash`` task (CMS and template accuracy @1/3/5; ``--language cf``: the
``codefusion-cf`` task's execution match and exact match @1/3/5), beside the constant answer (Bash:
``find . -name x``; CF: the most frequent train rule) and TF-IDF retrieval of the same train part on
the same rows. CodeFusion samples with each of
``--steps`` (eta 0; 1 = its single-step prediction); AR models use 5-beam search, and the best 5 of a
10-beam search with ``valid stop`` (a hypothesis may end only where its text parses: constrained stopping,
PICARD-style). ``--mbr N`` adds N samples per utterance ranked by minimum Bayes risk under CMS (Bash), sentence BLEU
(Python) or agreement of the linked rules' formatting of the request's own table (CF, MBR-exec)
(nl2code.generation.rerank.mbr: the program the samples agree with most; no gold is read), once
plainly and once with the first 5 chosen as a set (``, set of 5``: the expected best CMS among them, for @3/@5);
``--mbr-retrieval`` also ranks the samples and the TF-IDF neighbours' programs together under a mixture of both
as evidence (rerank.mixture_evidence; retrieval's share chosen on the rows each run held out of training):
retrieval-augmented decoding, reported in its own rows.
``--systems codefusion@cosine --set codefusion@cosine:model.schedule=cosine`` trains a variant of a
recipe beside it (an ablation).

Systems (configs): ``codefusion`` = configs/codefusion/bash_ft.yaml (the paper's model and loss, fine-
tuning only), ``codefusion_rag`` = bash_rag.yaml, ``ar`` = configs/codegen/bash_cpu.yaml (pairs only),
``ar_pt`` = bash_cpu_pt.yaml (a causal-LM stage on BashSnippets first), ``ar_rag`` = bash_cpu_rag.yaml;
``ar_rag_pt`` = bash_cpu_rag_pt.yaml (the snippet stage, then retrieval-prompted pairs with a copy head);
``*_rag*`` are retrieval-augmented, not the paper's setting. CF rules:
``codefusion`` = configs/codefusion/cf_ft.yaml, ``ar`` = configs/codegen/cf_cpu.yaml. CF rows are
judged as generated and ``+ column linking`` (every system and baseline alike): the train rules never
name a column, 114 test rules do, so each candidate's implicit column is bound to the table column the
request names (nl2code.eval.cf.link). Every language also reports ``+ valid first``: the same five
candidates reordered so those that run (CF: parse and execute on the row's table; Python, Bash: parse)
come first, execution-guided decoding; the set, and so syntax validity and @5, is unchanged. CF and Bash then
report ``+ distinct results``: candidates that behave as an earlier one does (CF: format the row's table alike;
Bash: the same bag of utilities and typed flags) move behind the rest of a pool of 10 (retrieval, AR valid stop). Python
(``--language python``, CoNaLa): python_ft.yaml / python_cpu.yaml, exact match @1/3/5, syntax
validity, BLEU and CodeBLEU of the first candidates; the constant is the most frequent train snippet.
``--scale paper`` trains the paper's size instead (CodeFusion: the ``codefusion-75m`` shape, d_model
512, layers 6/10/6, diffusion width 128; AR: 10 layers x 768, about the same parameters; lr 5e-4),
for a GPU. Splits: ``paper`` = the benchmark's train/test; ``grouped`` = every pair re-split by a hash
of its program string, so no test program occurs in train (written as JSONL that keeps each record's
extras, so CF rows keep the tables execution match runs on).

On a 2-core CPU, ``--parallel 2 --threads 1`` trains two systems at once, one core each (both see the
same contention). Multi-GPU: the configs written to the work directory train under ``torchrun
--nproc_per_node N -m nl2code train CONFIG --run-dir DIR``. Data: ``$NL2CODE_DATA`` (default
``../shared/data``). A run directory that already holds a finished run of the same config is reused.
Writes ``OUT/NAME.{md,json}`` (``--name``, default LANGUAGE_matched) after every system.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from nl2code.config import read_yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header_md, machine_info, md_table, write_results  # noqa: E402
from matched_langs import (  # noqa: E402
    LANGUAGES,
    UNSCALED,
    columns,
    constant_answer,
    judge,
    judge_variants,
    percents,
    split_data,
)
from matched_mbr import MBR_SET, choose_share, consensus, draw, is_mbr, mbr_label, rankings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _cf(cfg: dict, args: argparse.Namespace) -> None:
    if args.tiny:
        shape = dict(d_model=32, n_heads=2, encoder_layers=1, denoiser_layers=1, decoder_layers=1, embed_dim=8)
    elif args.scale == "paper":
        shape = dict(d_model=512, n_heads=8, encoder_layers=6, denoiser_layers=10, decoder_layers=6, embed_dim=128)
        cfg["train"].update(lr=5e-4)  # the paper's; 1e-3 is the CPU recipe's for a 2.4M model
    else:
        return
    cfg["model"].update(shape)


def _ar(cfg: dict, args: argparse.Namespace) -> None:
    if args.tiny:
        shape = dict(d_model=32, n_layers=1, n_heads=2)
    elif args.scale == "paper":
        shape = dict(d_model=768, n_layers=10, n_heads=12, dropout=0.1)
        cfg["train"].update(lr=5e-4)
    else:
        return
    cfg["model"].update(shape)


def recipe_of(name: str) -> str:
    """The system whose recipe ``name`` trains: ``ar@cosine`` is a variant of ``ar`` (changed by ``--set``)."""
    return name.partition("@")[0]


def scale_stage_minutes(cfg: dict[str, Any], minutes: float, name: str) -> None:
    """A multi-stage recipe's stage budgets (each stage's ``train.max_minutes``) scaled to ``minutes`` in all, in
    the recipe's proportions: matched wall-clock includes pre-training."""
    stages = cfg.get("stages") or []
    if not stages:
        return
    budgets = [(st.get("train") or {}).get("max_minutes") for st in stages]
    if not all(isinstance(b, int | float) and b > 0 for b in budgets):
        raise SystemExit(f"{name}: every stage of a multi-stage recipe needs train.max_minutes > 0 (its share)")
    for st, b in zip(stages, budgets, strict=True):
        st["train"]["max_minutes"] = round(minutes * b / sum(budgets), 3)


def apply_set(cfg: dict[str, Any], item: str, name: str) -> None:
    """One ``--set SYSTEM:SECTION.KEY=VALUE`` (or ``SYSTEM:stages.STAGE.SECTION.KEY=VALUE``, a stage's override)."""
    key, eq, value = item.partition(":")[2].partition("=")
    parts = key.split(".")
    target = cfg
    if parts[0] == "stages" and len(parts) == 4:
        stage = next((st for st in cfg.get("stages") or [] if st.get("name") == parts[1]), None)
        if stage is None:
            raise SystemExit(f"--set {item!r}: {name}'s recipe has no stage {parts[1]!r}")
        target, parts = stage, parts[2:]
        target.setdefault(parts[0], {})
    if not (eq and len(parts) == 2 and isinstance(target.get(parts[0]), dict)):
        raise SystemExit(
            f"--set {item!r}: expected SYSTEM:SECTION.KEY=VALUE or SYSTEM:stages.STAGE.SECTION.KEY=VALUE "
            f"with a section of {name}'s recipe"
        )
    target[parts[0]][parts[1]] = yaml.safe_load(value)


def write_config(name: str, data: dict[str, Any], args: argparse.Namespace, path: Path) -> Path:
    cfg = read_yaml(REPO / LANGUAGES[args.language].systems[recipe_of(name)])  # its extends: resolved
    (_cf if name.startswith("codefusion") else _ar)(cfg, args)
    cfg["data"].update(data)
    cfg["train"].update(
        seed=args.seed,
        max_steps=args.max_steps,
        max_minutes=args.minutes,
        batch_size=args.batch_size,
        device=args.device,
        cpu_threads=args.threads,
        eval_every=0,
        sample_every=0,
        ckpt_every=0,
        keep_last=1,
        tensorboard=False,
        progress="lines",
        log_every=50,
    )
    if args.curve:  # a checkpoint every --curve steps, all kept, for the learning curve
        cfg["train"].update(ckpt_every=args.curve, keep_last=100_000)
    if args.precision != "recipe":
        cfg["train"]["precision"] = args.precision
    for item in args.set:
        if item.partition(":")[0] == name:
            apply_set(cfg, item, name)
    scale_stage_minutes(cfg, args.minutes, name)  # after --set: a stage's max_minutes is its share
    text = yaml.safe_dump(cfg, sort_keys=False)
    if not (path.is_file() and path.read_text() == text):
        path.write_text(text)
    return path


def train(config: Path, run_dir: Path, log: Path, threads: int) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (reused when it holds a finished run of this config)."""
    cmd = [sys.executable, "-m", "nl2code", "train", str(config), "--run-dir", str(run_dir)]
    done = run_dir / "model.safetensors"
    fresh = not (done.is_file() and done.stat().st_mtime > config.stat().st_mtime)
    start = time.monotonic()
    if fresh:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
        with open(log, "w") as f:
            rc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
        if rc:
            raise RuntimeError(f"training failed ({rc}): {shlex.join(cmd)}; see {log}")
    wall = round(time.monotonic() - start, 1) if fresh else None
    return {**finished(run_dir), "command": shlex.join(cmd), "wall_s": wall, "reused": not fresh}


def loop_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The training-loop rows (those with ``elapsed_s``) of the run at ``run_dir``'s metrics, in order."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [r for r in rows if "elapsed_s" in r]


def stage_loops(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Loop seconds of each stage in :func:`loop_rows` ``rows``, in order (a one-stage run has one)."""
    return {r.get("stage", "main"): r["elapsed_s"] for r in rows}


def finished(run_dir: Path) -> dict[str, Any]:
    """Training facts of a finished run directory (``--runs``), from its metrics and saved config: steps, loss and
    tokens/s of the last stage, loop seconds of all stages together."""
    rows = loop_rows(run_dir)
    keys = ("step", "loss", "tok_per_s")
    info = dict(zip(("steps", "last_loss", "tok_per_s"), (rows[-1][k] for k in keys), strict=True))
    loops = stage_loops(rows)
    info.update(loop_s=round(sum(loops.values()), 1), last_loss=round(info["last_loss"], 4))
    info.update(tok_per_s=round(info["tok_per_s"]), run_dir=str(run_dir))
    return {**info, "stage_loop_s": {k: round(v, 1) for k, v in loops.items()}} if len(loops) > 1 else info


def check_trained_on(run_dir: Path, data: dict[str, Any], what: str) -> None:
    """Exit with a one-line error unless the run at ``run_dir`` trained on the split ``data`` describes (the same
    source, and for a written split file the same rows): a run judged on rows it trained on scores too high."""
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())["data"]
    if cfg["source"] != data["source"]:
        sys.exit(
            f"{what}: {run_dir / 'config.yaml'}: data.source is {cfg['source']!r}, this split's is {data['source']!r}"
        )
    if data["source"] == "jsonl":
        from nl2code.data.sources import load_source

        def rows(path: Path) -> set[tuple[str, ...]]:
            return {(r.task_id, r.split, r.nl, r.code) for r in load_source("jsonl", str(path)).records}

        mine, theirs = Path(data["path"]), Path(cfg["path"])
        if not theirs.is_file() or rows(theirs) != rows(mine):
            sys.exit(f"{what}: {run_dir / 'config.yaml'}: data.path {theirs} does not hold this split's rows ({mine})")


def number_pairs(flag: str, form: str, text: str) -> list[tuple[float, float | None]]:
    """A comma list of ``A`` or ``A:B`` numbers (``form`` names them in the error), as (A, B or None)."""
    out = []
    for item in text.split(","):
        a, _, b = item.partition(":")
        try:
            out.append((float(a), float(b) if b else None))
        except ValueError:
            raise SystemExit(f"{flag} {item!r}: expected {form} with numbers") from None
    return out


def mbr_sampling(text: str) -> list[tuple[float, float]]:
    """``--mbr-sampling`` entries: ``T`` or ``T:P``, the AR model's temperature and nucleus (top-p) mass for the
    ``--mbr`` samples (1 and 1 = plain ancestral sampling)."""
    out = [(t, 1.0 if p is None else p) for t, p in number_pairs("--mbr-sampling", "T or T:P", text)]
    for temp, mass in out:
        if not (temp > 0 and 0 < mass <= 1):
            raise SystemExit(f"--mbr-sampling {temp:g}:{mass:g}: need a temperature > 0 and 0 < top-p <= 1")
    return out


def guidance_weights(text: str) -> list[tuple[float, float | None]]:
    """``--guidance`` entries: ``W`` (the denoiser and D+H both at W; the AR model's only weight) or ``W:D``
    (CodeFusion's denoiser at W, D+H at D)."""
    return number_pairs("--guidance", "W or W:D", text)


def sampler(run: Any, name: str, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The system's generator and its sampling settings by label: eta-0 diffusion sampling with each of
    ``--steps`` (CodeFusion), else 5-beam search; with ``--mbr N`` first N samples (AR: temperature 1;
    CodeFusion: N draws at each of ``--steps``) that :func:`sample_judge` ranks by minimum Bayes risk."""
    from nl2code.api import GenerationConfig

    mbr = mbr_label(args)
    mbr_only = bool(mbr) and getattr(args, "mbr_only", False)
    weights = guidance_weights(getattr(args, "guidance", None) or "1")

    def guided(w: tuple[float, float | None]) -> str:
        if w[1] is None:
            return "" if w[0] == 1 else f"guidance {w[0]:g}"
        return f"guidance {w[0]:g}:{w[1]:g}"

    def label(*parts: object) -> str:  # a setting's name: its parts that are set (False and 0 are not)
        return ", ".join(str(x) for x in parts if x)

    if name.startswith("codefusion"):
        from nl2code.generation.diffusion import DiffusionGenerator

        steps = [int(x) for x in args.steps.split(",")]
        scores = getattr(args, "scores", None) or "final"
        roundings = [None if r == "default" else r for r in (getattr(args, "roundings", None) or "default").split(",")]
        cfgs = {
            label(
                f"{n} steps",
                r and f"{r} rounding",
                score != "final" and f"{score} score",
                guided(w),
                args.draws and f"best distinct of {args.draws} draws",
            ): GenerationConfig(
                n=5, seed=args.seed, steps=n, batch_size=args.gen_batch, draws=args.draws, score=score,
                guidance=w[0], decoder_guidance=w[1], rounding=r,
            )
            for n in steps
            for r in roundings
            for w in weights
            for score in scores.split(",")
        }
        if mbr:  # every draw kept (draws=0): the samples are the evidence; at each of --steps, so a multi-step
            # sampler is compared with its own single step under the same ranking
            draws = {
                label(f"{n} steps", r and f"{r} rounding", guided(w), mbr): GenerationConfig(
                    n=args.mbr, seed=args.seed, steps=n, batch_size=args.gen_batch, guidance=w[0],
                    decoder_guidance=w[1], rounding=r,
                )
                for n in steps
                for r in roundings
                for w in weights
            }
            cfgs = draws if mbr_only else {**draws, **cfgs}
        return DiffusionGenerator(run), cfgs
    from nl2code.generation.autoregressive import ARGenerator

    beam = GenerationConfig(n=5, max_new_tokens=64, stop=("\n",), seed=args.seed, batch_size=32)
    # constrained stopping refuses hypotheses, so more beams keep 5 that end validly; CF and Bash keep all 10 (distinct
    # results reorders them)
    lang = LANGUAGES[args.language]
    valid = replace(beam, n=lang.pool, num_beams=10, valid_stop=lang.syntax)
    cfgs = {"10-beam top 5, valid stop": valid, "5-beam": beam}  # the curve follows the last
    if mbr:  # guided sampling feeds MBR only (guidance is not for beam search); the label ends with the MBR one
        draws = {}
        truncations = mbr_sampling(getattr(args, "mbr_sampling", None) or "1")
        for w in weights:
            for temp, top_p in truncations:
                name = label(guided(w), temp != 1 and f"temperature {temp:g}", top_p != 1 and f"top-p {top_p:g}", mbr)
                draws[name] = replace(
                    beam, n=args.mbr, temperature=temp, top_p=top_p, batch_size=64, guidance=w[0],
                    decoder_guidance=w[1],
                )  # fmt: skip
        cfgs = draws if mbr_only else {**draws, **cfgs}
    return ARGenerator(run), cfgs


def sample_judge(gen: Any, cfg: Any, problems: dict, args: argparse.Namespace, label: str = "") -> tuple[dict, dict]:
    """(scores with the sampling seconds, candidates by task id) of the first 5 candidates per problem of
    ``label``'s setting, ranked as :func:`rankings` ranks it."""
    samples, seconds = draw(gen, cfg, problems)
    samples = rankings(label, samples, args, problems=problems)[label]
    return {**judge(LANGUAGES[args.language], problems, samples), "sample_s": seconds}, samples


def evaluate(
    name: str, run_dirs: list[Path], problems: dict, args: argparse.Namespace, near: dict | None = None
) -> dict[str, Any]:
    """Parameters, and 5 candidates per problem judged with each sampling setting (and each of its rankings);
    the run is loaded once, each setting sampled once. Several AR runs are decoded as one model, the mixture of
    their next-token distributions (``--runs NAME=A+B``). ``near``: the test rows' retrieved programs, for
    ``--mbr-retrieval`` (its share is chosen on the run's held-out rows first)."""
    from nl2code.api import load_ensemble, load_run

    run = load_run(run_dirs[0], args.device) if len(run_dirs) == 1 else load_ensemble(run_dirs, args.device)
    run.model.eval()
    gen, cfgs = sampler(run, name, args)
    evals: dict[str, Any] = {}
    mbr_cfgs = [c for s, c in cfgs.items() if is_mbr(s, args)]
    chosen = None
    if near is not None and mbr_cfgs:  # once, with the last MBR setting's sampler (the last of --steps)
        chosen = choose_share(gen, mbr_cfgs[-1], run, args)
        print(f"{name} --mbr-retrieval: " + json.dumps(chosen))
    stem = "+".join(d.name for d in run_dirs)  # an ensemble's samples are named by its members
    for setting, cfg in cfgs.items():
        mix = (chosen["share"], near) if chosen and is_mbr(setting, args) else None
        drawn, seconds = draw(gen, cfg, problems)
        keep = Path(args.work_dir) / "samples" / f"{stem}.{setting.replace(' ', '_').replace(',', '')}.json"
        keep.parent.mkdir(parents=True, exist_ok=True)
        keep.write_text(json.dumps(drawn))  # as generated, for re-ranking studies without sampling again
        for label, samples in rankings(setting, drawn, args, mix, problems).items():
            judged = judge_variants(LANGUAGES[args.language], problems, samples)
            for suffix, scores in judged.items():
                evals[label + suffix] = scores if suffix else {**scores, "sample_s": seconds}
                print(
                    f"{name} {label + suffix}: "
                    + json.dumps({k: round(v, 3) for k, v in evals[label + suffix].items()})
                )
    ids = list(problems)
    examples = [
        {"nl": problems[t].nl.strip(), "gold": problems[t].code.strip(), "top3": samples[t][:3]} for t in ids[:3]
    ]
    out = {"parameters": sum(p.numel() for p in run.model.parameters()), "evals": evals, "examples": examples}
    return {**out, "mbr_retrieval": chosen} if chosen else out


def learning_curve(
    name: str, run_dir: Path, problems: dict, args: argparse.Namespace, final: tuple[int, dict[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The metrics against training minutes within one run: every checkpoint ``--curve N`` kept (one every N
    steps, the last at the end) judged with the last sampling setting. The cosine follows the whole budget,
    so an early point is a model mid-schedule, not one trained for fewer minutes. ``final`` = (last step, the scores
    by label from :func:`evaluate`): the last checkpoint holds the final weights (no EMA), so it is not judged again."""
    import torch
    from safetensors.torch import load_model

    from nl2code.api import load_run
    from nl2code.rundir import RunDir
    from nl2code.train.checkpoint import MODEL_FILE, STATE_FILE, list_checkpoints
    from nl2code.train.config import resolve_stages

    run = load_run(run_dir, args.device)
    run.model.eval()
    gen, cfgs = sampler(run, name, args)
    label, cfg = list(cfgs.items())[-1]
    stages = resolve_stages(run.config)
    # a multi-stage run's curve follows its last stage, after the earlier stages' minutes
    last = RunDir(run_dir).stage(stages[-1].name) if len(stages) > 1 else RunDir(run_dir)
    before = sum(list(stage_loops(loop_rows(run_dir)).values())[:-1])
    points = []
    for step, ckpt in list_checkpoints(last.checkpoints):
        elapsed = before + torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)["elapsed_s"]
        if step == final[0] and not getattr(run.config.train, "ema_decay", 0.0):
            scores = final[1][label]
        else:
            load_model(run.model, str(ckpt / MODEL_FILE), device=str(args.device))
            scores, _ = sample_judge(gen, cfg, problems, args, label)
        minutes = round(elapsed / 60, 2)
        points.append({"step": step, "minutes": minutes, "sampling": label, **scores})
        print(f"{name} curve step {step} ({minutes} min): " + json.dumps({k: round(v, 3) for k, v in scores.items()}))
    return points


def plot_curves(result: dict[str, Any], split: str, path: Path) -> bool:
    """Metric@1 and @5 against training minutes per system, the baselines as horizontal lines."""
    part, lang = result["splits"][split], LANGUAGES[result["language"]]
    curves = {n: e["curve"] for n, e in part["systems"].items() if e.get("curve")}
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = lang.metrics[0]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (sname, pts) in enumerate(curves.items()):
        x = [p["minutes"] for p in pts]
        for k, style in ((1, "-o"), (5, "--s")):
            ax.plot(x, [100 * p[f"{metric}@{k}"] for p in pts], style, color=f"C{i}", label=f"{sname} @{k}")
    for j, (base, scores) in enumerate(part["baselines"].items()):
        for k, style in ((1, "-"), (5, "--")):
            ax.axhline(100 * scores[f"{metric}@{k}"], linestyle=style, color=f"C{len(curves) + j}", linewidth=1,
                       label=f"{base} @{k}")  # fmt: skip
    ax.set_xlabel("training minutes (checkpoints of one run)")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"{result['language']}, {split} split, {part['rows']} test rows")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def report(result: dict[str, Any], out: Path, name: str) -> None:
    lang = LANGUAGES[result["language"]]
    keys = columns(lang)

    m = result["machine"]
    trained = (
        "evaluated finished runs (`--runs`; each system's run directory holds its config and training log)"
        if result.get("runs")
        else f"each model trained for {result['minutes']} min of its loop (`train.max_minutes`), "
        f"precision {result['precision']}"
    )
    lines = [
        header_md(f"CodeFusion vs AR on {result['language']} at a matched budget (#18)", result["command"], m),
        f"Device: {m['cuda'] or 'CPU'}; scale {result['scale']}; {trained}; seed {result['seed']} (sampling and "
        f"the test sample); wall time of the whole script so far {result.get('wall_s')} s.",
        "",
    ]
    for split, part in result["splits"].items():
        paper = ["paper: CodeFusion 75M, CodeT5 encoder", "", *(lang.paper.get(k, "") for k in keys)]
        rows = [paper] if lang.paper else []
        rows += [[f"baseline: {b}", "", *percents(v, keys)] for b, v in part["baselines"].items()]
        for sname, entry in part["systems"].items():
            rows += [[sname, label, *percents(v, keys)] for label, v in entry["evals"].items()]
        lines += [
            f"## Split: {split} ({part['rows']} test rows, a seeded random sample of {part['test_rows']}; "
            f"{part['train_rows']} train rows; constant answer `{part['constant']}`)",
            "",
            md_table(["system", "sampling", *keys], rows),
            "",
            md_table(
                ["system", "parameters", "steps", "loop s", "last loss", "tokens/s"],
                [
                    [
                        n if len(ms) == 1 else f"{n}, member {i + 1} ({Path(t['run_dir']).name})",
                        f"{e['parameters']:,}" + ("" if len(ms) == 1 else " (all members)"),
                        *(t[k] for k in ("steps", "loop_s", "last_loss")),
                        f"{t['tok_per_s']:,}",
                    ]
                    for n, e in part["systems"].items()
                    for ms in [e["train"].get("members", [e["train"]])]  # an ensemble: a row per member run
                    for i, t in enumerate(ms)
                ],
            ),  # fmt: skip
            "",
        ]
        curve_rows = [
            [n, p["step"], p["minutes"], p["sampling"], *percents(p, keys)]
            for n, e in part["systems"].items()
            for p in e.get("curve", [])
        ]
        if curve_rows:
            png = f"{name}_curve_{split}.png"
            out.mkdir(parents=True, exist_ok=True)
            plotted = plot_curves(result, split, out / png)
            lines += [
                "Learning curve (checkpoints of each run; the cosine follows the whole budget, so early points are "
                "mid-schedule):",
                "",
                md_table(["system", "step", "minutes", "sampling", *keys], curve_rows),
                "",
                *([f"![learning curve]({png})", ""] if plotted else []),
            ]
        for sname, entry in part["systems"].items():
            if chosen := entry.get("mbr_retrieval"):
                grid = ", ".join(
                    f"{k}: {v * (1 if chosen['metric'] == 'bleu' else 100):.1f}" for k, v in chosen["scores"].items()
                )
                lines += [
                    f"{sname}: retrieval share {chosen['share']:g} of the MBR evidence, chosen by {chosen['metric']} "
                    f"on {chosen['held_out_rows']} rows the run held out of training ({grid}).",
                    "",
                ]
        for sname, entry in part["systems"].items():
            for ex in entry["examples"]:
                top = ", ".join(f"`{c[:100]}`" for c in ex["top3"])
                lines.append(f"- {sname}: {ex['nl'][:90]!r}, gold `{ex['gold']}` -> {top}")
        lines.append("")
    write_results(name, result, "\n".join(lines), out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--language", choices=list(LANGUAGES), default="bash", help="which CodeFusion benchmark")
    p.add_argument(
        "--systems",
        default=None,
        help="comma list (default: all of the language's); SYSTEM@TAG is a variant of SYSTEM's recipe that "
        "--set SYSTEM@TAG:... changes (an ablation): "
        + "; ".join(f"{k}: {', '.join(v.systems)}" for k, v in LANGUAGES.items()),
    )
    p.add_argument("--minutes", type=float, default=25.0, help="training loop budget per system")
    p.add_argument("--scale", choices=["recipe", "paper"], default="recipe", help="committed recipe or paper size")
    p.add_argument("--split", default=None, help="comma list of paper, grouped (default: the language's)")
    p.add_argument("--max-steps", type=int, default=100_000, help="upper bound on steps (the budget decides)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, default=500, help="seeded random test rows (0 = the whole split)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", default="1,20", help="CodeFusion sampling steps to evaluate (1 = one x0 prediction)")
    p.add_argument(
        "--scores",
        default="final",
        help="CodeFusion: candidate rankings to judge each of --steps with, comma-separated: final (D+H's "
        "confidence on the final x0) and/or denoise (each candidate re-noised and denoised in one step)",
    )
    p.add_argument(
        "--roundings",
        default="default",
        help="CodeFusion: how each step's x0 becomes tokens, comma-separated, each judged at each of --steps: "
        "default (decoder_clamp for a model with a decoder), decoder, decoder_clamp, decoder_sample (snap to "
        "tokens drawn from D+H, argmax at the last step), grounding, clamping",
    )
    p.add_argument(
        "--guidance",
        default="1",
        help="classifier-free guidance weights, comma-separated (1 = off): CodeFusion judges each of --steps with "
        "each (W:D = the denoiser at W, D+H at D), the AR model's --mbr samples are drawn with each; weights other "
        "than 1 need a run trained with "
        "objective.cond_dropout, e.g. --set ar@cfg:objective.cond_dropout=0.1",
    )
    p.add_argument(
        "--mbr-sampling",
        default="1",
        help="the AR model's --mbr samples: temperatures, or T:P with a nucleus (top-p) mass, comma-separated; "
        "each is its own setting (e.g. 1,0.7,1:0.9; 1 = plain sampling)",
    )
    p.add_argument(
        "--draws",
        type=int,
        default=0,
        help="CodeFusion: x_T draws per utterance, of which the 5 best distinct candidates are judged (0 = 5 draws)",
    )
    p.add_argument(
        "--mbr",
        type=int,
        default=0,
        help="also sample N candidates per utterance (AR: temperature 1; CodeFusion: N draws at each of --steps) and "
        "rank them by minimum Bayes risk under the language's metric (Bash: CMS; Python: sentence BLEU; CF: the same "
        "formatting of the request's table); 0 = off",
    )
    p.add_argument(
        "--mbr-only",
        action="store_true",
        help="judge the --mbr samples only (no beam search, no CodeFusion top-5 draws): a re-judging run or an "
        "ensemble (--runs NAME=A+B) spends its time where the comparison is",
    )
    p.add_argument("--gen-batch", type=int, default=512, help="CodeFusion sequences sampled together")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--precision",
        default="auto",
        help="auto (fp32 on CPU, bf16 on CUDA) | fast (also bf16 on a CPU with native bf16) | fp32 | bf16 | recipe "
        "(each config's own)",
    )
    p.add_argument("--parallel", type=int, default=1, help="systems trained at once")
    p.add_argument("--threads", type=int, default=0, help="CPU threads per training (0 = PyTorch's default)")
    p.add_argument("--work-dir", default="/tmp/bash_matched")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--name", default=None, help="results file name (default LANGUAGE_matched)")
    p.add_argument(
        "--curve",
        type=int,
        default=0,
        help="keep a checkpoint every N steps and judge each: "
        "the metric against training minutes (table and plot); 0 = off",
    )
    p.add_argument("--tiny", action="store_true", help="tiny models: check the script on a CPU in a minute")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SYSTEM:SECTION.KEY=VALUE",
        help="change one key of a system's recipe, e.g. ar:model.copy_head=true, or of one of its stages, e.g. "
        "ar_pt@half:stages.pretrain.train.max_minutes=15 (a stage's minutes are its share of --minutes; "
        "repeatable; the value is YAML)",
    )
    p.add_argument(
        "--mbr-retrieval",
        action="store_true",
        help="with --mbr: also rank the samples and the TF-IDF retrieved programs together under a mixture of "
        "both as evidence (retrieval-augmented decoding, its own rows); retrieval's share is chosen on the rows "
        "each run held out of training",
    )
    p.add_argument(
        "--baselines-only", action="store_true", help="score the baselines only (no system is trained or evaluated)"
    )
    p.add_argument(
        "--runs",
        default=None,
        help="NAME=RUN_DIR,...: evaluate these finished runs instead of training --systems; all trained on the one "
        "--split given (paper: the benchmark's train part; grouped: the JSONL this script writes, checked); "
        "NAME=RUN_A+RUN_B decodes AR runs of one tokenizer as one model (the mixture of their next-token "
        "distributions)",
    )
    args = p.parse_args()
    lang = LANGUAGES[args.language]
    if args.curve and args.runs and "+" in args.runs:
        p.error("--curve follows one run's checkpoints, not an ensemble's (--runs NAME=A+B)")
    from nl2code.sampling.diffusion import ROUNDINGS

    if not set(args.roundings.split(",")) <= {"default", *ROUNDINGS}:
        p.error(f"--roundings: each of default, {', '.join(ROUNDINGS)}")
    if args.mbr_only and not args.mbr:
        p.error("--mbr-only judges the --mbr samples: give --mbr N")
    if args.mbr_retrieval and not (args.mbr and lang.mbr):
        p.error("--mbr-retrieval ranks the --mbr samples: give --mbr N (Bash, Python)")
    args.name = args.name or f"{args.language}_matched"
    args.split = args.split or ",".join(lang.splits)
    if not set(args.split.split(",")) <= set(lang.splits):
        p.error(f"--split: {args.language} has the splits {', '.join(lang.splits)}")
    if args.systems and not {recipe_of(n) for n in args.systems.split(",")} <= set(lang.systems):
        p.error(f"--systems: {args.language} has {', '.join(lang.systems)}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads * args.parallel)

    from bash_baselines import retrieval_samples

    from nl2code.utils.seed import seeded_subset

    work, out = Path(args.work_dir), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result: dict[str, Any] = {
        "command": "python benchmarks/bash_matched.py " + shlex.join(sys.argv[1:]),
        "machine": machine_info(),
        "seed": args.seed,
        "language": args.language,
        "scale": "tiny" if args.tiny else args.scale,
        "minutes": args.minutes,
        "precision": args.precision,
        "runs": bool(args.runs),
        "splits": {},
    }
    given = dict(x.split("=", 1) for x in args.runs.split(",")) if args.runs else {}
    names = list(given) if given else (args.systems or ",".join(lang.systems)).split(",")
    if given and "," in args.split:
        sys.exit("--runs: finished runs are evaluated on the split they were trained on; pass that one --split")
    for split in args.split.split(","):
        data, all_problems, train_recs = split_data(lang, split, work)
        constant = constant_answer(lang, train_recs)
        keys = seeded_subset(list(all_problems), args.limit or None, args.seed)
        problems = {k: all_problems[k] for k in keys}
        part: dict[str, Any] = {
            "rows": len(problems),
            "test_rows": len(all_problems),
            "train_rows": len(train_recs),
            "constant": constant,
            "baselines": {},
            "systems": {},
        }
        tfidf = retrieval_samples(train_recs, problems, lang.pool)
        answers = {"constant": {t: [constant] for t in problems}, "tfidf": tfidf}
        if mbr_label(args):  # the control for --mbr-retrieval: retrieval's neighbours ranked by their own consensus
            answers[f"tfidf, MBR among its {lang.pool}, set of {MBR_SET}"] = consensus(lang, tfidf, problems)
        for base, samples in answers.items():
            for suffix, scores in judge_variants(lang, problems, samples).items():
                part["baselines"][base + suffix] = scores
        result["splits"][split] = part

        def one(name: str, split: str = split, data: dict = data) -> dict[str, Any]:
            tag = f"{name}-{split}"
            config = write_config(name, data, args, work / f"{tag}.yaml")
            return train(config, work / tag, work / f"{tag}.train.log", args.threads)

        if args.baselines_only:
            result["wall_s"] = round(time.monotonic() - started, 1)
            report(result, out, args.name)
            continue
        members = {name: [Path(d) for d in dirs.split("+")] for name, dirs in given.items()}
        if given:
            for name, dirs in members.items():
                for d in dirs:
                    check_trained_on(d, data, f"--runs {name}")
            trained = {
                name: finished(dirs[0]) if len(dirs) == 1 else {"members": [finished(d) for d in dirs]}
                for name, dirs in members.items()
            }
        else:
            with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
                trained = dict(zip(names, pool.map(one, names), strict=True))
        for name in names:
            dirs = members[name] if given else [work / f"{name}-{split}"]
            near = tfidf if args.mbr_retrieval else None
            entry = {"train": trained[name], **evaluate(name, dirs, problems, args, near)}
            if args.curve:
                final = (entry["train"]["steps"], entry["evals"])
                entry["curve"] = learning_curve(name, dirs[0], problems, args, final)
            part["systems"][name] = entry
            result["wall_s"] = round(time.monotonic() - started, 1)
            report(result, out, args.name)
        for base, scores in part["baselines"].items():
            print(
                f"{split} {base}: "
                + json.dumps({k: round(v * (1 if k in UNSCALED else 100), 1) for k, v in scores.items()})
            )


if __name__ == "__main__":
    main()
