"""The MoE pipeline on our data, one command: base -> one LoRA expert per language -> 3-expert MoE.

1. ``nl2code train configs/moe/base.yaml``: a small CodeGen LM on Python (CoNaLa), Bash (CodeFusion's
   NL2Bash split) and Excel CF rules together.
2. ``nl2code train configs/moe/expert_{python,bash,cf}.yaml`` with ``init_from`` = the base: LoRA on
   the base's FFNs, one language each (``--qlora``: frozen base held in NF4).
3. ``nl2code merge-moe configs/moe/merge.yaml``: the three experts' FFNs in every layer, routers
   from the base's hidden states on each expert's prompts (``gate_mode: hidden``), top-2.
4. ``nl2code train configs/moe/router.yaml`` with ``init_from`` = the merged MoE: routers only.
5. Every model (base, experts, merged MoE, router-tuned MoE) on the first ``--limit`` test problems of
   each language, greedy: the task metric (CoNaLa BLEU / exact match, Bash template / command match,
   CF execution match), CoNaLa-tokenised BLEU for all, CodeBLEU with its four components and the
   number of pairs at the data-flow floor; teacher-forced on the gold code: the test cross-entropy,
   and how often each MoE layer's top-1 expert is the language's own expert.

CodeBLEU beyond Python (the ``codebleu`` package knows neither Bash nor the CF language): the same
formula and n-gram code, with tree-sitter-bash (Bash) or the project's CF parser (CF rules) for the
syntax match. Neither language has a data-flow extractor, so every Bash/CF pair sits at the floor
(data-flow 0 counted as 1, exactly what the package does for any pair without data flow). CF rules
have no spaces, so their n-grams use identifier/number/punctuation tokens instead of ``split()``.

    python benchmarks/moe_pipeline.py [--out runs/moe] [--limit 150] [--steps-scale 1] [--qlora] [--reuse]

writes benchmarks/results/moe_pipeline.json and .md (with the command, seed, wall times, machine).
``--reuse`` keeps finished run directories (e.g. to re-evaluate); their wall times are then taken
from the previous results file, and the report lists them as reused.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CONFIGS = REPO / "configs" / "moe"
DATA = REPO.parent / "shared" / "data"
EXPERTS = ("python", "bash", "cf")  # slot order in configs/moe/merge.yaml
MODELS = ("base", "expert-python", "expert-bash", "expert-cf", "moe-merged", "moe")
# Weighted n-gram keywords for Bash: reserved words and builtins (the CF ones are the rule heads).
_BASH_WORDS = (
    "if then else elif fi case esac for select while until do done in function time coproc alias bg "
    "break builtin cd command continue declare echo eval exec exit export false fg getopts hash jobs kill "
    "let local printf pushd popd pwd read readonly return set shift source test trap true type ulimit "
    "umask unalias unset wait"
)
BASH_KEYWORDS = frozenset(_BASH_WORDS.split())


@dataclass(frozen=True)
class Lang:
    task: str
    data: Path
    primary: str  # the task metric reported first
    secondary: str


LANGS = {
    "python": Lang("conala", DATA / "conala", "bleu", "exact_match@1"),
    "bash": Lang(
        "codefusion-bash", DATA / "codefusion/benchmarks/BashBenchmarks.json", "template_match@1", "command_match@1"
    ),
    "cf": Lang(
        "codefusion-cf",
        DATA / "codefusion/benchmarks/CFRuleBenchmarks.json",
        "execution_match@1",
        "execution_match_nonempty@1",
    ),
}


# -- CodeBLEU for Bash and CF rules ---------------------------------------------------------------


def cf_tokens(text: str) -> list[str]:
    return re.findall(r"[A-Za-z_]\w*|\d+(?:\.\d+)?|\S", text)


def _cf_sexp(node) -> str:
    from nl2code.eval.cf.parser import Call

    if isinstance(node, Call):
        return "(" + " ".join([node.head, *(_cf_sexp(a) for a in node.args)]) + ")"
    return type(node).__name__.lower()


@functools.cache
def _bash_parser():
    import tree_sitter_bash
    from tree_sitter import Language, Parser

    return Parser(Language(tree_sitter_bash.language()))


def subtrees(code: str, lang: str) -> list[str] | None:
    """S-expressions of every non-leaf subtree (as codebleu's syntax match), None if unparsable."""
    if lang == "cf":
        from nl2code.eval.cf.parser import Call, CFParseError, parse_rule

        try:
            root = parse_rule(code)
        except CFParseError:
            return None
        out, stack = [], [root]
        while stack:
            node = stack.pop()
            if isinstance(node, Call):
                out.append(_cf_sexp(node))
                stack += list(node.args)
        return out
    root = _bash_parser().parse(code.encode("utf-8")).root_node
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        out.append(str(node))
        stack += [c for c in node.children if c.children]
    return out


def codebleu_other(refs: list[str], preds: list[str], lang: str) -> dict[str, float]:
    """CodeBLEU parts for ``bash`` / ``cf`` (see the module doc): data-flow is 0 -> every pair at the floor."""
    from codebleu import bleu, weighted_ngram_match

    from nl2code.eval.cf.parser import HEAD_KINDS

    tok = str.split if lang == "bash" else cf_tokens
    keywords = BASH_KEYWORDS if lang == "bash" else frozenset(HEAD_KINDS)
    hyps = [tok(p.strip()) for p in preds]
    rs = [[tok(r.strip())] for r in refs]
    ngram = bleu.corpus_bleu(rs, hyps)
    weighted = weighted_ngram_match.corpus_bleu(
        [[[r, {t: 1 if t in keywords else 0.2 for t in r}] for r in rr] for rr in rs], hyps
    )
    matched = total = 0
    for ref, pred in zip(refs, preds, strict=True):
        ref_trees = subtrees(ref.strip(), lang)
        if not ref_trees:
            continue  # gold rules the CF parser rejects (6 test rows) have no syntax to match
        cand = set(subtrees(pred.strip(), lang) or [])
        matched += sum(t in cand for t in ref_trees)
        total += len(ref_trees)
    syntax = matched / total if total else 0.0
    return {
        "codebleu": 0.25 * (ngram + weighted + syntax + 1.0),
        "codebleu_ngram": ngram,
        "codebleu_weighted_ngram": weighted,
        "codebleu_syntax": syntax,
        "codebleu_dataflow": 0.0,
        "codebleu_dataflow_floor": float(len(refs)),
    }


# -- the steps ------------------------------------------------------------------------------------


def cli_run(argv: list[str]) -> float:
    from nl2code import cli

    print(f"\n$ nl2code {' '.join(argv)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    if cli.main(argv) != 0:
        raise SystemExit(f"step failed: nl2code {' '.join(argv)}")
    return time.perf_counter() - start


def run_summary(run_dir: Path) -> dict:
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["split"] == "train"]
    evals = [r for r in recs if r["split"] == "eval"]
    out = {
        "steps": train[-1]["step"],
        "train_loss": train[-1]["loss"],
        "train_ce": train[-1].get("ce"),
        "eval_ce": evals[-1].get("ce") if evals else None,
    }
    if (run_dir / "adapter.json").is_file():
        info = json.loads((run_dir / "adapter.json").read_text())
        out |= {"trainable": info["trainable"], "total": info["total"]}
    return out


def evaluate(run_dir: Path, limit: int, max_new_tokens: int) -> dict[str, dict]:
    from nl2code.api import GenerationConfig, load_generator
    from nl2code.eval.metrics.bleu import conala_bleu
    from nl2code.eval.tasks import EvalContext, get_task
    from nl2code.prompts import benchmark_prompts
    from nl2code.utils.seed import seeded_subset

    gen = load_generator(run_dir)
    out = {}
    for name, lang in LANGS.items():
        task = get_task(lang.task)
        problems = dict(seeded_subset(list(task.load_problems(str(lang.data)).items()), limit, seed=0))
        prompts = benchmark_prompts(lang.task, str(lang.data), "nl", limit)
        assert [p.task_id for p in prompts] == list(problems)
        t0 = time.perf_counter()
        cands = gen.generate(
            [p.prompt for p in prompts], GenerationConfig(max_new_tokens=max_new_tokens, batch_size=50)
        )
        gen_s = time.perf_counter() - t0
        samples = {p.task_id: [c[0].text] for p, c in zip(prompts, cands, strict=True)}
        res = task.judge(problems, samples, EvalContext(ks=[1], workers=1, progress=False))
        refs, preds = [problems[t].code for t in problems], [samples[t][0] for t in problems]
        m = {k: v for k, v in res.metrics.items() if "@" not in k or k.endswith("@1")}  # task metrics at k=1
        m["bleu"] = conala_bleu(refs, preds)
        if name == "python":
            m |= {k: v for k, v in res.metrics.items() if k.startswith("codebleu")}
        else:
            m |= codebleu_other(refs, preds, name)
        out[name] = m | {"n": len(problems), "generate_s": round(gen_s, 2), "examples": preds[:3]}
    return out


@torch.no_grad()
def teacher_forced(run_dir: Path, limit: int) -> dict[str, dict]:
    """Per language, on ``NL <sep> gold code <eos>`` of the evaluated test problems: the mean
    cross-entropy of the code tokens (and ``<eos>``), and for an MoE, per layer, the share of all
    tokens whose top-1 expert is the language's own expert."""
    from nl2code.api import load_run
    from nl2code.eval.tasks import get_task
    from nl2code.utils.seed import seeded_subset

    run = load_run(run_dir)
    tok, model = run.tokenizer, run.model
    picks: list[torch.Tensor] = []
    hooks = [
        m.router.register_forward_hook(lambda _m, _i, out: picks.append(out.experts[:, 0])) for m in model.moe_layers()
    ]
    out = {}
    for e, (name, lang) in enumerate(LANGS.items()):
        assert EXPERTS[e] == name
        all_problems = list(get_task(lang.task).load_problems(str(lang.data)).values())
        problems = seeded_subset(all_problems, limit, seed=0)
        hits, tokens, ce_sum, targets = torch.zeros(len(hooks)), 0, 0.0, 0
        for p in problems:
            prompt = [*tok.encode(p.nl), tok.sep_id]
            ids = [*prompt, *tok.encode(p.code), tok.eos_id][: model.cfg.max_seq_len]
            picks.clear()
            logits = model(torch.tensor([ids])).logits[0, len(prompt) - 1 : -1]
            ce = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[len(prompt) :]), reduction="sum")
            ce_sum, targets = ce_sum + float(ce), targets + len(ids) - len(prompt)
            hits += torch.tensor([float((x == e).sum()) for x in picks])
            tokens += len(ids)
        out[name] = {"test_ce": ce_sum / targets}
        if hooks:
            out[name]["own_expert_top1"] = (hits / tokens).tolist()
    for h in hooks:
        h.remove()
    return out


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/moe", help="folder for the six run directories (default runs/moe)")
    ap.add_argument("--limit", type=int, default=150, help="test problems per language (default 150)")
    ap.add_argument("--steps-scale", type=float, default=1.0, help="multiply every run's max_steps (default 1)")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="greedy decoding budget (default 64)")
    ap.add_argument("--qlora", action="store_true", help="train the experts on an NF4-quantised frozen base")
    ap.add_argument("--reuse", action="store_true", help="keep finished run directories under --out")
    ap.add_argument("--results", default=str(RESULTS / "moe_pipeline"), help="output path without suffix")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.chdir(REPO)  # config paths (../shared/data, runs/) are relative to the repository root
    out = Path(args.out)
    runs = {name: out / name for name in MODELS}
    if not args.reuse and any(p.exists() for p in runs.values()):
        raise SystemExit(f"{out} already holds runs; pass --reuse to keep finished ones, or another --out")
    started, load_before = time.perf_counter(), machine()
    wall: dict[str, float | str] = {}

    def steps(cfg: str) -> list[str]:
        n = yaml.safe_load((CONFIGS / cfg).read_text())["train"]["max_steps"]
        return [f"train.max_steps={max(1, round(n * args.steps_scale))}"]

    reused: dict[str, dict] = {}

    def phase(name: str, argv: list[str]) -> None:
        record = runs[name] / "pipeline_phase.json"  # when and how fast this run was made
        if args.reuse and (runs[name] / "model.safetensors").is_file():
            reused[name] = json.loads(record.read_text()) if record.is_file() else {}
            wall[name] = reused[name].get("wall_s", "unknown")
        else:
            load = [round(x, 2) for x in os.getloadavg()]
            wall[name] = round(cli_run(argv), 1)
            info = {
                "wall_s": wall[name],
                "load_average_start": load,
                "load_average_end": [round(x, 2) for x in os.getloadavg()],
            }
            record.write_text(json.dumps(info) + "\n")

    phase("base", ["train", str(CONFIGS / "base.yaml"), "--run-dir", str(runs["base"]), *steps("base.yaml")])
    qlora = ["adapters.quantize_base=nf4"] if args.qlora else []
    for lang in EXPERTS:
        cfg = f"expert_{lang}.yaml"
        phase(
            f"expert-{lang}",
            [
                "train",
                str(CONFIGS / cfg),
                "--run-dir",
                str(runs[f"expert-{lang}"]),
                f"init_from={runs['base']}",
                *steps(cfg),
                *qlora,
            ],
        )
    merge_cfg = yaml.safe_load((CONFIGS / "merge.yaml").read_text())
    merge_cfg["base_model"] = str(runs["base"])
    for spec, lang in zip(merge_cfg["experts"], EXPERTS, strict=True):
        spec["source_model"] = str(runs[f"expert-{lang}"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "merge.yaml").write_text(yaml.safe_dump(merge_cfg, sort_keys=False))
    phase("moe-merged", ["merge-moe", str(out / "merge.yaml"), "--out", str(runs["moe-merged"])])
    phase(
        "moe",
        [
            "train",
            str(CONFIGS / "router.yaml"),
            "--run-dir",
            str(runs["moe"]),
            f"init_from={runs['moe-merged']}",
            *steps("router.yaml"),
        ],
    )

    t0 = time.perf_counter()
    results = {name: evaluate(runs[name], args.limit, args.max_new_tokens) for name in MODELS}
    for name in MODELS:
        for lang, extra in teacher_forced(runs[name], args.limit).items():
            results[name][lang] |= extra
    wall["evaluation"] = round(time.perf_counter() - t0, 1)
    if reused:
        numbers = [v for v in wall.values() if isinstance(v, float | int)]
        wall["total"] = round(sum(numbers), 1) if len(numbers) == len(wall) else "unknown (reused runs)"
    else:
        wall["total"] = round(time.perf_counter() - started, 1)
    report = {
        "command": " ".join(["python benchmarks/moe_pipeline.py", *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": load_before | {"load_average_end": machine()["load_average"]},
        "seed": 0,
        "args": vars(args),
        "configs": {p.name: p.read_text() for p in sorted(CONFIGS.glob("*.yaml"))},
        "wall_s": wall,
        "reused_runs": reused,
        "training": {name: run_summary(runs[name]) for name in MODELS if name != "moe-merged"},
        "merge_report": json.loads((runs["moe-merged"] / "merge_report.json").read_text()),
        "results": results,
    }
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {path.with_suffix('.md')} and .json ({wall['total']} s)", file=sys.stderr)
    return 0


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(r: dict) -> str:
    m, a = r["machine"], r["args"]
    lines = [
        "# MoE pipeline: base -> LoRA expert per language -> merged 3-expert MoE -> router fine-tuning",
        "",
        f"Command: `{r['command']}` (seed {r['seed']}; configs in `configs/moe/`, copied into the .json).",
        "",
        f"{r['date']} · {m['platform']} · {m['cpus']} CPUs, 1 torch thread · load average {m['load_average']} "
        f"at start, {m['load_average_end']} at the end · Python {m['python']} · torch {m['torch']}",
        "",
        "Wall time (s): "
        + ", ".join(f"{k} {v}" for k, v in r["wall_s"].items())
        + "."
        + (
            " Reused from an earlier invocation (wall time and load average measured then): "
            + "; ".join(
                f"{k} (load {v.get('load_average_start')} -> {v.get('load_average_end')})"
                for k, v in r["reused_runs"].items()
            )
            + "."
            if r["reused_runs"]
            else ""
        ),
        "",
        f"Evaluation: the first {a['limit']} test problems of each language, greedy, at most "
        f"{a['max_new_tokens']} new tokens. Experts{' (QLoRA, NF4 base)' if a['qlora'] else ''}: LoRA r=16 on "
        "the FFNs only. MoE: every layer, 3 experts, top-2, `gate_mode: hidden`.",
        "",
        "| language | model | test CE | task metric | value | 2nd metric | value | BLEU | CodeBLEU | n-gram "
        "| w. n-gram | syntax | data-flow | at floor / n |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lang, spec in LANGS.items():
        for model in MODELS:
            x = r["results"][model][lang]
            cells = [
                lang,
                model,
                _f(x["test_ce"]),
                spec.primary,
                _f(x[spec.primary]),
                spec.secondary,
                _f(x[spec.secondary]),
                _f(x["bleu"], 1),
                *(_f(x[f"codebleu{part}"]) for part in ("", "_ngram", "_weighted_ngram", "_syntax", "_dataflow")),
                f"{int(x['codebleu_dataflow_floor'])} / {x['n']}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Test CE: mean cross-entropy (nats) of the gold code tokens and `<eos>` given `NL <sep>`, "
        "teacher-forced. CoNaLa's BLEU (x100, its tokenizer, no smoothing) is computed for every language; "
        "Python's task metric is the same BLEU. CodeBLEU is in [0, 1]; Python's comes from the `codebleu` "
        "package, Bash/CF use the same formula with their own parsers and have no data-flow extractor, so all "
        "their pairs are at the floor: their CodeBLEU is 0.25 higher than their first three parts justify. "
        "Test problems are the first ones in file order. CodeFusion's Bash test split shares 747 of its "
        "2,522 commands with its train split. CF: 60 of the 178 test tables are header-only, where any "
        "executable highlight rule matches the gold, hence `execution_match_nonempty@1` (tables with data); "
        "CF test rules are written in an explicit-column dialect (`c[1]`, quoted text) the train rules "
        "lack, so exact match stays near 0. All metrics of every task are in the .json.",
        "",
    ]
    for lang, spec in LANGS.items():
        best = max(MODELS, key=lambda k: r["results"][k][lang][spec.primary])
        lines.append(f"- best {lang} {spec.primary}: {best} ({_f(r['results'][best][lang][spec.primary])})")
    lines += [
        "",
        "Share of tokens (NL, `<sep>`, gold code) whose top-1 expert is the language's own expert, "
        "per layer (chance = 1/3):",
        "",
        "| MoE | language | layer shares |",
        "|---|---|---|",
    ]
    for model in ("moe-merged", "moe"):
        for lang in LANGS:
            per_layer = r["results"][model][lang]["own_expert_top1"]
            lines.append(f"| {model} | {lang} | {' / '.join(_f(s, 2) for s in per_layer)} |")
    mr = r["merge_report"]
    lines += [
        "",
        "Merged gates, per layer: largest cosine between two experts' gate vectors "
        + ", ".join(_f(x["max_cosine"], 2) for x in mr["layers"])
        + f"; merge-moe warnings: {len(mr['warnings'])}. MoE parameters: {mr['parameters']:,} "
        "(top-2 of 3 experts per token).",
        "",
        "| run | steps | final train CE | held-out CE | trainable / total params |",
        "|---|---|---|---|---|",
    ]
    for name, t in r["training"].items():
        params = f"{t['trainable']:,} / {t['total']:,}" if "trainable" in t else "all"
        if name == "moe":
            params = "routers only"
        lines.append(f"| {name} | {t['steps']} | {_f(t['train_ce'])} | {_f(t['eval_ce'])} | {params} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
