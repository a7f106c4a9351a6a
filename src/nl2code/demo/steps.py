"""The demo's steps as functions of a :class:`Context`; each returns the facts its marker records."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nl2code.demo.settings import DemoError, DemoSettings
from nl2code.rundir import RunDir
from nl2code.utils.io import read_jsonl, write_json, write_jsonl
from nl2code.utils.seed import seeded_subset


@dataclass
class Context:
    out: Path
    settings: DemoSettings
    config_dir: Path
    say: Callable[[str], None]
    isolation: str | None = None  # the sandbox label HumanEval programs run under (sandbox.require)
    humaneval_skip: str = ""  # why HumanEval is not executed (the required isolation is missing), or ""

    def corpus_options(self) -> dict[str, Any]:
        s = self.settings
        return {} if s.max_functions is None else {"max_functions": s.max_functions}


# -- corpus and tokenizer -------------------------------------------------------------------------


def corpus(ctx: Context) -> dict[str, Any]:
    """Mine the stdlib; pick the held-out functions (test-split modules, short code, stable order)."""
    from nl2code.data.sources import load_source

    res = load_source("pysource", None, **ctx.corpus_options())
    test = [r for r in res.records if r.split == "test" and r.code.count("\n") <= ctx.settings.heldout_max_lines]
    # A stable pseudo-random order (CRC-32 of the id), so the chosen functions span many modules.
    test.sort(key=lambda r: zlib.crc32(r.task_id.encode()))
    chosen = test[: ctx.settings.heldout]
    write_jsonl(
        ctx.out / "corpus" / "heldout.jsonl", [{"task_id": r.task_id, "nl": r.nl, "code": r.code} for r in chosen]
    )
    lines = nextword_rows(ctx, test)
    write_jsonl(ctx.out / "corpus" / "nextword.jsonl", lines)
    stats = {
        "records": res.split_counts(),
        "dropped": dict(res.dropped),
        "notes": res.notes,
        "heldout": len(chosen),
        "heldout_candidates": len(test),
        "nextword_rows": len(lines),
    }
    write_json(ctx.out / "corpus" / "stats.json", stats)
    ctx.say(
        f"      {sum(stats['records'].values())} functions ({stats['records']}), {len(chosen)} held out for scoring, "
        f"{len(lines)} next-word rows"
    )
    return stats


def nextword_rows(ctx: Context, functions: list[Any]) -> list[dict[str, str]]:
    """The next-word task's held-out rows: lines of test-split functions, in the held-out order."""
    from nl2code.demo.nextword import word_rows

    s = ctx.settings
    dicts = ({"task_id": r.task_id, "nl": r.nl, "code": r.code} for r in functions)
    return word_rows(dicts, s.nextword_per_function)[: s.nextword_rows]


TRAIN_WORDS_PER_FUNCTION = 40  # training rows per function the baselines learn from (time, not accuracy)


def baselines(ctx: Context) -> dict[str, Any]:
    """The constant and retrieval answers for both held-out tasks, from the training functions only.

    Next word: see :mod:`nl2code.demo.nextword`. Docstring -> function: constant = the most frequent
    training function, retrieval = the function of the training docstring nearest by TF-IDF.
    """
    from collections import Counter

    from nl2code.data.retrieval import TfIdf
    from nl2code.data.sources import load_source
    from nl2code.demo.nextword import ConstantBaseline, RetrievalBaseline, completion_scores, word_rows
    from nl2code.demo.scores import heldout_scores

    train_fns = [
        {"task_id": r.task_id, "nl": r.nl, "code": r.code}
        for r in load_source("pysource", None, **ctx.corpus_options()).records
        if r.split == "train"
    ]
    train_rows = word_rows(train_fns, TRAIN_WORDS_PER_FUNCTION)
    rows = read_jsonl(ctx.out / "corpus" / "nextword.jsonl")
    targets = [r["target"] for r in rows]
    heldout = read_jsonl(ctx.out / "corpus" / "heldout.jsonl")
    refs = {r["task_id"]: r["code"] for r in heldout}
    constant_fn = Counter(f["code"] for f in train_fns).most_common(1)[0][0]
    index = TfIdf([f["nl"] for f in train_fns])
    nearest = {}
    for r in heldout:
        scores = index.scores(r["nl"])
        nearest[r["task_id"]] = train_fns[int(scores.argmax())]["code"] if scores.max() > 0 else constant_fn
    systems = {
        "constant": (ConstantBaseline(train_rows), {t: [constant_fn] for t in refs}),
        "retrieval": (RetrievalBaseline(train_rows), {t: [c] for t, c in nearest.items()}),
    }
    metrics, samples = {}, []
    for name, (lines, functions) in systems.items():
        predictions = lines.predict(rows)
        samples += [
            {"system": name, "task_id": r["task_id"], "prediction": p} for r, p in zip(rows, predictions, strict=True)
        ]
        metrics[name] = {
            "nextword": completion_scores(targets, predictions),
            "heldout": heldout_scores(refs, functions, 1),
        }
    write_jsonl(ctx.out / "samples" / "baselines" / "nextword.jsonl", samples)
    write_json(ctx.out / "eval" / "baselines" / "metrics.json", metrics)
    for name, m in metrics.items():
        ctx.say(
            f"      {name}: next word exact {m['nextword']['exact_match']:.3f}, "
            f"edit similarity {m['nextword']['edit_similarity']:.3f}; function BLEU {m['heldout']['bleu']:.1f}"
        )
    return {"train_lines": len(train_rows), "rows": len(rows)}


def tokenizer(ctx: Context) -> dict[str, Any]:
    from nl2code.data.sources import load_source
    from nl2code.data.tokenizer import CodeTokenizer

    records = [r for r in load_source("pysource", None, **ctx.corpus_options()).records if r.split == "train"]
    texts = [t for r in records for t in (r.nl, r.code) if t]
    tok = CodeTokenizer.train(texts, vocab_size=ctx.settings.vocab_size, show_progress=sys.stderr.isatty())
    tok.save(RunDir(ctx.out).tokenizer_dir)  # laid out like a run directory's
    return {"vocab_size": tok.vocab_size, "texts": len(texts)}


# -- training -------------------------------------------------------------------------------------

_STEP_KEYS = ("max_steps", "warmup_steps", "eval_every", "sample_every", "ckpt_every", "log_every")


def _scale_train(train: dict[str, Any], scale: float) -> dict[str, Any]:
    """Step counts x ``scale``; positive counts stay >= 1 so nothing that was on turns off."""
    out = dict(train)
    for key in _STEP_KEYS:
        if isinstance(out.get(key), int) and out[key] > 0:
            out[key] = max(1, round(out[key] * scale))
    return out


def demo_config(ctx: Context, name: str) -> dict[str, Any]:
    """The model's YAML from the config folder with the demo's tokenizer, corpus size and budget."""
    from nl2code.config import read_yaml

    raw = read_yaml(ctx.config_dir / f"{name}.yaml")
    raw["tokenizer"] = {"path": str(RunDir(ctx.out).tokenizer_dir.resolve())}
    options = ctx.corpus_options()
    if options:  # --quick mines fewer functions: limit every data section that reads the stdlib corpus
        top = raw.setdefault("data", {})
        sections = [top] + [st["data"] for st in raw.get("stages", []) if "data" in st]
        for section in sections:
            if section.get("source", top.get("source", "pysource")) == "pysource":
                section["options"] = {**section.get("options", {}), **options}
    scale = ctx.settings.steps_scale
    if scale != 1.0:
        raw["train"] = _scale_train(raw.get("train", {}), scale)
        for st in raw.get("stages", []):
            if "train" in st:
                st["train"] = _scale_train(st["train"], scale)
    return raw


def _in_turn_or_together(
    ctx: Context, jobs: int, what: str, work: list[tuple[str, Any, tuple, Path, int, Any]]
) -> dict[str, float]:
    """Run ``(name, target, args, log, total, progress)`` items: together in child processes when
    ``jobs > 1``, else one after the other in this process. Seconds per name."""
    from nl2code.demo.parallel import ChildJob, run_children

    seconds: dict[str, float] = {}
    for w in work:
        w[3].with_suffix(".cpu").unlink(missing_ok=True)  # a child writes it anew; none in-process
    if jobs > 1 and len(work) > 1:
        for i in range(0, len(work), jobs):
            seconds |= run_children([ChildJob(*w) for w in work[i : i + jobs]], what, ctx.say)
        return seconds
    for name, target, args, _, _, _ in work:
        start = time.monotonic()
        code = target(*args) or 0
        if code != 0:
            raise DemoError(f"{what} {name} stopped (exit {code}); run the demo again to resume it")
        seconds[name] = round(time.monotonic() - start, 1)
    return seconds


def train(ctx: Context, names: list[str], jobs: int) -> dict[str, Any]:
    """Write each model's demo config and train the models (side by side when ``jobs > 1``)."""
    import yaml

    from nl2code.demo.parallel import total_steps, train_one, training_progress

    work = []
    for name in names:
        raw = demo_config(ctx, name)
        cfg_path = ctx.out / "configs" / f"{name}.yaml"
        cfg_path.parent.mkdir(parents=True, exist_ok=True)
        cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        run_dir = ctx.out / name
        work.append(
            (
                name,
                train_one,
                (cfg_path, run_dir),
                run_dir / "train.log",
                total_steps(raw),
                lambda run_dir=run_dir: training_progress(run_dir),
            )
        )
    seconds = _in_turn_or_together(ctx, jobs, "train", work)
    for name in names:
        if not RunDir(ctx.out / name).has_weights():
            raise DemoError(f"training {name} ended without {RunDir(ctx.out / name).weights_file}")
    return {"seconds_by_model": seconds, "cpu_s_by_model": _child_cpu(work)}


def _child_cpu(work: list) -> dict[str, float]:
    from nl2code.demo.parallel import child_cpu_seconds

    cpu = {name: child_cpu_seconds(log) for name, _, _, log, _, _ in work}
    return {k: v for k, v in cpu.items() if v is not None}


# -- generation -----------------------------------------------------------------------------------


def first_paragraph(text: str) -> str:
    """A docstring's summary (lines up to the first blank one, joined), the form the models train on."""
    lines = []
    for line in text.strip().splitlines():
        if not line.strip() or line.strip().startswith(">>>"):
            break
        lines.append(line.strip())
    return " ".join(lines)


_DEF = re.compile(r"^(\s*(?:async\s+)?def\s+)([A-Za-z_]\w*)", re.M)


def humaneval_completion(generated: str, entry_point: str) -> str:
    """Turn a generated function into a HumanEval completion.

    The models write whole functions from a description, while HumanEval's completion continues a
    prompt that ends inside the function. A prompt whose body is only its docstring is already a valid
    function, so the generated function follows it on a new line, renamed to the entry point so the
    test calls it (the last definition wins). No other repair is made.
    """
    return "\n" + _DEF.sub(lambda m: m.group(1) + entry_point, generated, count=1)


def _generate_all(
    gen: Any, prompts: list[str], ctx: Context, name: str, tick: Callable[[int], None], chunk: int = 8
) -> list[list[Any]]:
    """Candidates for every prompt, ``chunk`` prompts per call; ``tick(k)`` after every k prompts."""
    from nl2code.api import GenerationConfig

    s = ctx.settings
    out: list[list[Any]] = []
    for i in range(0, len(prompts), chunk):
        # A seed per chunk: reproducible, and chunks do not repeat each other's noise.
        cfg = GenerationConfig(
            n=s.n,
            max_new_tokens=s.max_new_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            seed=s.seed * 1_000_003 + i,
            batch_size=chunk * s.n,
            steps=s.diffusion_steps,
        )
        out += gen.generate(prompts[i : i + chunk], cfg)
        tick(len(prompts[i : i + chunk]))
    return out


def generate_one(ctx: Context, name: str, counter: Path | None = None) -> int:
    """Candidates for the held-out functions and HumanEval into ``samples/<name>/``.

    ``counter``: a file kept holding the number of prompts done (the parent's progress bar); without
    it a progress bar is drawn here.
    """
    from tqdm import tqdm

    from nl2code.api import load_generator
    from nl2code.data.sources import load_source

    heldout = read_jsonl(ctx.out / "corpus" / "heldout.jsonl")
    problems = seeded_subset(load_source("humaneval").records, ctx.settings.humaneval_problems, seed=0)
    bar = tqdm(
        total=len(heldout) + len(problems),
        desc=f"generate {name}",
        unit="prompt",
        disable=counter is not None or not sys.stderr.isatty(),
    )

    done = 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        bar.update(k)
        if counter is not None:
            counter.write_text(str(done), encoding="utf-8")

    gen = load_generator(ctx.out / name)
    results = _generate_all(gen, [r["nl"] for r in heldout], ctx, name, tick)
    rows = [
        {"task_id": r["task_id"], "rank": j, "completion": c.text, "score": c.score}
        for r, cands in zip(heldout, results, strict=True)
        for j, c in enumerate(cands)
    ]
    write_jsonl(ctx.out / "samples" / name / "heldout.jsonl", rows)

    results = _generate_all(gen, [first_paragraph(p.nl) for p in problems], ctx, name, tick)
    rows = [
        {
            "task_id": p.task_id,
            "rank": j,
            "completion": humaneval_completion(c.text, p.extras["entry_point"]),
            "generated": c.text,
            "score": c.score,
        }
        for p, cands in zip(problems, results, strict=True)
        for j, c in enumerate(cands)
    ]
    write_jsonl(ctx.out / "samples" / name / "humaneval.jsonl", rows)
    if hasattr(gen, "decode_ids"):  # an AR model continues code; the diffusion model writes whole functions
        write_jsonl(ctx.out / "samples" / name / "nextword.jsonl", next_words(gen, ctx))
    bar.close()
    write_json(ctx.out / "samples" / name / "done.json", {"heldout": len(heldout), "humaneval": len(problems)})
    return 0


def next_words(gen: Any, ctx: Context, chunk: int = 16) -> list[dict[str, Any]]:
    """The AR model's greedy next word for every next-word row, after ``NL <sep> code so far`` (the
    fine-tuning layout); the answer is the word its continuation starts with."""
    from nl2code.api import GenerationConfig
    from nl2code.demo.nextword import first_word

    tok = gen.tok
    rows = read_jsonl(ctx.out / "corpus" / "nextword.jsonl")
    cfg = GenerationConfig(max_new_tokens=ctx.settings.nextword_tokens, temperature=0.0, batch_size=chunk)
    out = []
    for i in range(0, len(rows), chunk):
        part = rows[i : i + chunk]
        ids = [[*tok.encode(r["nl"]), tok.sep_id, *tok.encode(r["prefix"])] for r in part]
        for r, cands in zip(part, gen.decode_ids(ids, cfg, [tok.eos_id]), strict=True):
            text = cands[0].text
            out.append({"task_id": r["task_id"], "continuation": text, "prediction": first_word(text)})
    return out


def generate(ctx: Context, names: list[str], jobs: int) -> dict[str, Any]:
    """Generate with every model (side by side when ``jobs > 1``); models already done are skipped."""
    from nl2code.demo.parallel import counter_progress

    todo = [n for n in names if not (ctx.out / "samples" / n / "done.json").is_file()]
    total = len(read_jsonl(ctx.out / "corpus" / "heldout.jsonl")) + (ctx.settings.humaneval_problems or 164)
    work = []
    for name in todo:
        counter = ctx.out / "samples" / name / "progress"
        counter.parent.mkdir(parents=True, exist_ok=True)
        # In this process (jobs = 1) the bar is drawn directly; a child reports through the counter.
        together = jobs > 1 and len(todo) > 1
        args = (dataclasses.replace(ctx, say=print) if together else ctx, name, counter if together else None)
        work.append(
            (
                name,
                generate_one,
                args,
                ctx.out / "samples" / name / "generate.log",
                total,
                lambda counter=counter: counter_progress(counter),
            )
        )
    seconds = _in_turn_or_together(ctx, jobs, "generate", work)
    return {"seconds_by_model": seconds, "cpu_s_by_model": _child_cpu(work), "n": ctx.settings.n}


# -- evaluation -----------------------------------------------------------------------------------


def evaluate(ctx: Context, name: str) -> dict[str, Any]:
    from nl2code.demo.scores import heldout_scores, humaneval_scores
    from nl2code.eval.harness import run_eval
    from nl2code.eval.tasks import EvalContext

    s = ctx.settings
    refs = {r["task_id"]: r["code"] for r in read_jsonl(ctx.out / "corpus" / "heldout.jsonl")}
    samples: dict[str, list[str]] = {}
    for row in sorted(read_jsonl(ctx.out / "samples" / name / "heldout.jsonl"), key=lambda r: r["rank"]):
        samples.setdefault(row["task_id"], []).append(row["completion"])
    scores = heldout_scores(refs, samples, s.n)

    he_dir = ctx.out / "eval" / name / "humaneval"
    if ctx.humaneval_skip:  # generated code never runs under weaker isolation than required unasked
        he = skipped_humaneval(ctx.humaneval_skip, s.n)
    else:
        ectx = EvalContext(
            ks=list(s.ks),
            workers=os.cpu_count() or 1,
            timeout_floor=s.timeout_floor,
            progress=sys.stderr.isatty(),
            isolation=ctx.isolation,
        )
        summary = run_eval("humaneval", ctx.out / "samples" / name / "humaneval.jsonl", he_dir, None, ectx)
        he = humaneval_scores(read_jsonl(he_dir / "results.jsonl"), s.n)
        he["isolation"] = summary["isolation"]
    metrics = {"heldout": scores, "humaneval": he}
    lines_path = ctx.out / "samples" / name / "nextword.jsonl"
    if lines_path.is_file():
        from nl2code.demo.nextword import completion_scores

        targets = {r["task_id"]: r["target"] for r in read_jsonl(ctx.out / "corpus" / "nextword.jsonl")}
        preds = {r["task_id"]: r["prediction"] for r in read_jsonl(lines_path)}
        metrics["nextword"] = completion_scores(list(targets.values()), [preds.get(t, "") for t in targets])
    write_json(ctx.out / "eval" / name / "metrics.json", metrics)
    pass1 = "not run" if ctx.humaneval_skip else f"{he['at_k']['pass'][0]:.3f}"
    if "nextword" in metrics:
        nl = metrics["nextword"]
        ctx.say(f"      {name}: next word exact {nl['exact_match']:.3f}, edit similarity {nl['edit_similarity']:.3f}")
    ctx.say(
        f"      {name}: syntax@1 {scores['at_k']['syntax_valid'][0]:.2f}, "
        f"exact@1 {scores['at_k']['exact_match'][0]:.2f}, BLEU {scores['bleu']:.1f}, "
        f"CodeBLEU {scores['codebleu']:.3f}, HumanEval pass@1 {pass1}"
    )
    info = {"heldout_problems": len(refs), "humaneval_problems": he["problems"]}
    return info | ({"humaneval_skipped": ctx.humaneval_skip} if ctx.humaneval_skip else {})


def skipped_humaneval(reason: str, n: int) -> dict[str, Any]:
    """The HumanEval entry of metrics.json when its programs were not executed (pass@k = NaN)."""
    return {
        "skipped": reason,
        "problems": 0,
        "samples": 0,
        "solved": 0,
        "at_k": {"pass": [float("nan")] * n},
        "outcomes": {},
        "isolation": "not run",
    }


# -- report ---------------------------------------------------------------------------------------


def report(ctx: Context, models: list[str], skipped: dict[str, str]) -> dict[str, Any]:
    from nl2code.demo.report import collect, summary_table, write_report

    data = collect(ctx.out, models, skipped, ctx.settings)
    path = write_report(ctx.out / "report", data)
    table = summary_table(data)
    (ctx.out / "report" / "summary.md").write_text(table + "\n", encoding="utf-8")
    ctx.say("\n" + table + "\n")
    ctx.say(f"report: {path}")
    return {"report": str(path), "models": models, "skipped": skipped}
