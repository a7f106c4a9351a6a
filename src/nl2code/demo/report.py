"""The demo's report: one self-contained HTML page (plots embedded, PNGs also beside it) and a table.

Everything shown is read back from the run directory's artifacts, so the report can be rebuilt at
any time from the files alone.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

from nl2code.demo.settings import DemoSettings
from nl2code.rundir import RunDir
from nl2code.utils.io import atomic_write

# Metrics in the side-by-side chart: (label, function of a model's data); all on a 0..1 scale.
BAR_METRICS = [
    ("syntax valid", lambda m: m["heldout"]["syntax_valid"]),
    ("exact match@1", lambda m: m["heldout"]["at_k"]["exact_match"][0]),
    ("BLEU / 100", lambda m: m["heldout"]["bleu"] / 100),
    ("CodeBLEU", lambda m: m["heldout"]["codebleu"]),
    ("HumanEval pass@1", lambda m: m["humaneval"]["at_k"]["pass"][0]),
]
CURVES = [
    ("syntax_valid", "heldout", "syntax valid@k"),
    ("exact_match", "heldout", "exact match@k"),
    ("best_bleu", "heldout", "best sentence BLEU@k"),
    ("pass", "humaneval", "HumanEval pass@k"),
]


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a kill; the run log keeps the rest
    return rows


def _param_count(weights: Path) -> int | None:
    if not weights.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118 (not a dict)


def _train_seconds(run_dir: Path) -> float | None:
    """Training time from the run log (the last ``elapsed_s`` of each stage), so resumes do not reset it."""
    last: dict[str, float] = {}
    for r in _read_jsonl(run_dir / "metrics.jsonl"):
        if r.get("split") == "train" and isinstance(r.get("elapsed_s"), int | float):
            last[r.get("stage", "main")] = float(r["elapsed_s"])
    return sum(last.values()) if last else None


def collect(out: Path, models: list[str], skipped: dict[str, str], settings: DemoSettings) -> dict[str, Any]:
    """Everything the report shows, from the run directory."""
    import torch

    steps = {}
    for p in sorted((out / "steps").glob("*.json"), key=lambda p: p.stat().st_mtime):  # in the order run
        rec = json.loads(p.read_text(encoding="utf-8"))
        steps[rec["step"]] = rec
    per_model = {}
    for name in models:
        metrics_path = out / "eval" / name / "metrics.json"
        per_model[name] = {
            "log": _read_jsonl(out / name / "metrics.jsonl"),
            "metrics": json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else None,
            "params": _param_count(RunDir(out / name).weights_file),
            "train_s": _train_seconds(out / name),
            "samples": _read_jsonl(out / "samples" / name / "heldout.jsonl"),
        }
    heldout = _read_jsonl(out / "corpus" / "heldout.jsonl")
    base_path = out / "eval" / "baselines" / "metrics.json"
    line_samples = {name: _read_jsonl(out / "samples" / name / "nextword.jsonl") for name in models}
    for r in _read_jsonl(out / "samples" / "baselines" / "nextword.jsonl"):
        line_samples.setdefault(r["system"], []).append(r)
    stats_path = out / "corpus" / "stats.json"
    return {
        "out": str(out),
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{platform.platform()} · {os.cpu_count()} CPUs · Python {platform.python_version()} · "
        f"torch {torch.__version__}",
        "settings": json.loads(json.dumps(settings.__dict__)),
        "corpus": json.loads(stats_path.read_text(encoding="utf-8")) if stats_path.is_file() else {},
        "steps": steps,
        "models": per_model,
        "skipped": skipped,
        "heldout": heldout,
        "baselines": json.loads(base_path.read_text(encoding="utf-8")) if base_path.is_file() else {},
        "nextword": _read_jsonl(out / "corpus" / "nextword.jsonl"),
        "nextword_samples": {k: {r["task_id"]: r["prediction"] for r in v} for k, v in line_samples.items()},
    }


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def summary_rows(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table (one row per model that has scores)."""
    n = data["settings"]["n"]
    header = [
        "model",
        "params",
        "train s",
        "syntax valid",
        "exact@1",
        f"exact@{n}",
        "BLEU",
        "CodeBLEU",
        "distinct-2",
        "HumanEval pass@1",
        f"pass@{n}",
    ]
    rows = []
    for name, m in data["models"].items():
        s = m["metrics"]
        if s is None:
            rows.append([name, _fmt(m["params"]), _fmt(m["train_s"], 0)] + ["–"] * (len(header) - 3))
            continue
        h, he = s["heldout"], s["humaneval"]
        rows.append([
            name, f"{m['params'] / 1e6:.2f}M" if m["params"] else "–", _fmt(m["train_s"], 0),
            _fmt(h["syntax_valid"]), _fmt(h["at_k"]["exact_match"][0]), _fmt(h["at_k"]["exact_match"][-1]),
            _fmt(h["bleu"], 1), _fmt(h["codebleu"]), _fmt(h["diversity"].get("distinct_2")),
            _fmt(he["at_k"]["pass"][0]), _fmt(he["at_k"]["pass"][-1]),
        ])  # fmt: skip
    return header, rows


def comparison_rows(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the models-vs-baselines table: both held-out tasks, one row per system."""
    header = [
        "system",
        "next word: exact match",
        "next word: edit similarity",
        "function: exact@1",
        "function: BLEU",
        "function: CodeBLEU",
    ]
    systems = {**data["baselines"], **_scored(data)}
    rows = []
    for name, m in systems.items():
        line, fn = m.get("nextword"), m["heldout"]
        rows.append([
            name, _fmt(line["exact_match"]) if line else "–", _fmt(line["edit_similarity"]) if line else "–",
            _fmt(fn["at_k"]["exact_match"][0]), _fmt(fn["bleu"], 1), _fmt(fn["codebleu"]),
        ])  # fmt: skip
    return header, rows


def _markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def humaneval_not_run(data: dict[str, Any]) -> str:
    """Why HumanEval's programs were not executed (the sandbox lacked the required isolation), or ""."""
    return next((m["humaneval"]["skipped"] for m in _scored(data).values() if m["humaneval"].get("skipped")), "")


def summary_table(data: dict[str, Any]) -> str:
    """The summary as a markdown table (what ``nl2code demo`` prints at the end)."""
    lines = _markdown(*summary_rows(data))
    if data.get("baselines"):
        lines += [f"\nmodels vs baselines on the held-out sets ({len(data['nextword'])} next-word rows):\n"]
        lines += _markdown(*comparison_rows(data))
    if humaneval_not_run(data):
        lines.append(f"\nHumanEval pass@k not run: {humaneval_not_run(data)}")
    for name, why in data["skipped"].items():
        lines.append(f"\n(skipped {name}: {why})")
    h = data["heldout"]
    lines.append(
        f"\nheld-out: {len(h)} stdlib functions, n={data['settings']['n']} candidates each; "
        "BLEU x100 (CoNaLa tokenizer), others in [0, 1]."
    )
    return "\n".join(lines)


# -- plots ----------------------------------------------------------------------------------------


def _stage_curves(log: list[dict]) -> tuple[dict[str, list[tuple[int, float]]], list[tuple[str, int]]]:
    """Train/eval loss against a global step (stages laid end to end) and where each stage starts."""
    order: list[str] = []
    last: dict[str, int] = {}
    for r in log:
        st = r.get("stage", "main")
        if st not in order:
            order.append(st)
        last[st] = max(last.get(st, 0), int(r.get("step", 0)))
    offset, starts = {}, []
    total = 0
    for st in order:
        offset[st] = total
        starts.append((st, total))
        total += last[st]
    curves: dict[str, list[tuple[int, float]]] = {"train": [], "eval": []}
    for r in log:
        loss = r.get("loss")
        if r.get("split") in curves and isinstance(loss, int | float) and math.isfinite(loss):
            curves[r["split"]].append((offset[r.get("stage", "main")] + int(r["step"]), float(loss)))
    return curves, starts


def plot_losses(data: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    names = list(data["models"])
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        curves, starts = _stage_curves(data["models"][name]["log"])
        for split, style in (("train", "-"), ("eval", "o--")):
            pts = sorted(curves[split])
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=f"{split} loss", ms=4)
        for st, x in starts:
            ax.axvline(x, color="grey", lw=0.8, ls=":")
            ax.annotate(
                st,
                (x, 1),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                fontsize=8,
                color="grey",
            )
        ax.set_title(name)
        ax.set_xlabel("optimizer step (stages in sequence)")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _scored(data: dict[str, Any]) -> dict[str, dict]:
    return {k: m["metrics"] for k, m in data["models"].items() if m["metrics"] is not None}


def plot_metrics(data: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    scored = _scored(data)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(len(scored), 1)
    for i, (name, m) in enumerate(scored.items()):
        xs = [j + i * width for j in range(len(BAR_METRICS))]
        ys = [f(m) for _, f in BAR_METRICS]
        bars = ax.bar(xs, ys, width, label=name)
        ax.bar_label(bars, labels=["not run" if math.isnan(y) else f"{y:.2f}" for y in ys], fontsize=7, padding=2)
    ax.set_xticks([j + width * (len(scored) - 1) / 2 for j in range(len(BAR_METRICS))])
    ax.set_xticklabels([label for label, _ in BAR_METRICS], fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (0-1)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_topk(data: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    scored = _scored(data)
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.2))
    for ax, (key, part, title) in zip(axes, CURVES, strict=True):
        for name, m in scored.items():
            ys = m[part]["at_k"][key]
            ax.plot(range(1, len(ys) + 1), ys, "o-", label=name, ms=4)
        ax.set_title(title, fontsize=10)
        if key != "best_bleu":
            ax.set_ylim(-0.02, 1.02)  # rates: the whole 0-1 range, so near-zero reads as near zero
        else:
            ax.set_ylim(bottom=0)
        ax.set_xlabel("k")
        ax.set_xticks(range(1, data["settings"]["n"] + 1))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- HTML -----------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>'
        f'{html.escape(alt)} (<a href="{path.name}">{path.name}</a>)</figcaption></figure>'
    )


def _examples(data: dict[str, Any], count: int = 6) -> str:
    firsts = {name: {r["task_id"]: r for r in m["samples"] if r["rank"] == 0} for name, m in data["models"].items()}
    parts = []
    for ex in data["heldout"][:count]:
        cells = [f"<div><h4>reference</h4><pre>{html.escape(ex['code'])}</pre></div>"]
        for name, rows in firsts.items():
            row = rows.get(ex["task_id"])
            text = row["completion"] if row else "(no sample)"
            score = f" · score {row['score']:.3f}" if row else ""
            cells.append(f"<div><h4>{html.escape(name)}{score}</h4><pre>{html.escape(text)}</pre></div>")
        parts.append(
            f"<section class='ex'><p><b>{html.escape(ex['nl'])}</b> <small>{html.escape(ex['task_id'])}"
            f"</small></p><div class='cols'>{''.join(cells)}</div></section>"
        )
    return "".join(parts)


def _line_examples(data: dict[str, Any], count: int = 12, context: int = 4) -> str:
    """Next-word rows: the last lines given, the true next word, and each system's answer (✓ = exact)."""
    from nl2code.demo.nextword import normalise

    preds = data["nextword_samples"]
    order = [k for k in preds if k in data["models"]] + [k for k in preds if k not in data["models"]]
    parts = []
    for row in data["nextword"][:count]:
        shown = "\n".join(row["prefix"].rstrip("\n").split("\n")[-context:])
        cells = [f"<tr><td>true next word</td><td><code>{html.escape(row['target'])}</code></td></tr>"]
        for name in order:
            p = preds[name].get(row["task_id"], "")
            mark = " ✓" if normalise(p) == normalise(row["target"]) else ""
            cells.append(f"<tr><td>{html.escape(name)}{mark}</td><td><code>{html.escape(p)}</code></td></tr>")
        parts.append(
            f"<section class='ex'><p><b>{html.escape(row['nl'])}</b> <small>{html.escape(row['task_id'])}</small>"
            f"</p><pre>… {html.escape(shown)}</pre><table class='lines'>{''.join(cells)}</table></section>"
        )
    return "".join(parts)


def _comparison(data: dict[str, Any]) -> str:
    if not data.get("baselines"):
        return ""
    const = data["baselines"].get("constant", {})
    answer = next(iter(data["nextword_samples"].get("constant", {}).values()), "")
    return f"""<h2>Held-out: trained models vs a constant answer and retrieval</h2>{_table(*comparison_rows(data))}
<p class="note"><b>Next word</b> ({len(data["nextword"])} rows; CodeXGLUE's line-level completion): given a held-out
function's description and its first lines, write the next word. Rows: up to
{data["settings"]["nextword_per_function"]} non-blank lines after the signature of each function from modules
never trained on. Exact match and edit similarity (1 - Levenshtein distance / longer length) compare the lines
after stripping and collapsing whitespace. The AR model writes greedily after <code>NL &lt;sep&gt; code so
far</code>; the diffusion model writes whole functions and has no next-word answer. <b>constant</b> answers
every row with the most frequent line of the training functions (<code>{html.escape(answer)}</code>);
<b>retrieval</b> answers with the line that followed the most similar training context (TF-IDF cosine over the
description and the lines so far, {const.get("nextword", {}).get("rows", 0)} rows scored).
<b>Function</b>: the docstring -> function task below (top candidate); constant = the most frequent training
function, retrieval = the function of the nearest training docstring (TF-IDF).</p>
<h3>Next-word examples (✓ = exact match)</h3>{_line_examples(data)}"""


CSS = """body{font:14px/1.5 system-ui,sans-serif;max-width:1200px;margin:0 auto;padding:16px 24px;color:#1d1f21}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f3f4f6}img{max-width:100%}
figure{margin:8px 0 20px}figcaption{color:#6b7280;font-size:12px}pre{background:#f8f8f8;padding:8px;overflow:auto;
font-size:12px;margin:0}.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:10px}
.ex{border-top:1px solid #eee;padding-top:6px}h4{margin:4px 0;font-size:12px;color:#374151}.note{color:#6b7280}
.warn{background:#fef3c7;border:1px solid #f59e0b;padding:6px 10px}
table.lines td{text-align:left;font-size:12px}"""


def write_report(report_dir: Path, data: dict[str, Any]) -> Path:
    """Write the plots and ``index.html`` into ``report_dir``; returns the HTML path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib
    except ImportError:  # the plots are the optional `report` extra; the tables need nothing
        note = "<p>(plots skipped: matplotlib is not installed; pip install 'nl2code[report]')</p>"
        figures = [note, note]
    else:
        matplotlib.use("Agg")  # no display: the demo runs headless
        plot_losses(data, report_dir / "loss.png")
        figures = [_img(report_dir / "loss.png", "training loss per model (train and held-out split)")]
    if _scored(data) and len(figures) == 1:
        plot_metrics(data, report_dir / "metrics.png")
        plot_topk(data, report_dir / "topk.png")
        figures += [
            _img(report_dir / "metrics.png", "metrics side by side"),
            _img(report_dir / "topk.png", "top-k curves: any of the first k candidates / pass@k"),
        ]
    header, rows = summary_rows(data)
    s, corpus = data["settings"], data["corpus"]
    step_rows = [[r["title"], f"{r['seconds']:.1f}", _fmt(r.get("cpu_s"), 1)] for r in data["steps"].values()]
    detail_rows = []
    for name, m in _scored(data).items():
        h, he = m["heldout"], m["humaneval"]
        div = h["diversity"]
        detail_rows.append(
            [
                name,
                _fmt(h["codebleu_parts"]["ngram"]),
                _fmt(h["codebleu_parts"]["syntax"]),
                _fmt(h["codebleu_parts"]["dataflow"]),
                str(h["codebleu_dataflow_floor"]),
                _fmt(div.get("edit_distance")),
                _fmt(div.get("embedding_similarity")),
                "–" if he.get("skipped") else f"{he['solved']}/{he['problems']}",
                ", ".join(f"{k} {v}" for k, v in he["outcomes"].items()) or "not run",
                str(he.get("isolation", "")),
            ]
        )
    skipped = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in data["skipped"].items())
    why_not = humaneval_not_run(data)
    notice = f'<p class="warn"><b>HumanEval pass@k not run:</b> {html.escape(why_not)}</p>' if why_not else ""
    body = f"""<h1>nl2code demo report</h1>
<p class="note">{html.escape(data["created"])} · {html.escape(data["machine"])} · run directory
<code>{html.escape(data["out"])}</code></p>
<h2>Summary</h2>{_table(header, rows)}
{notice}
{_comparison(data)}
{f"<p><b>Skipped models</b></p><ul>{skipped}</ul>" if skipped else ""}
<p class="note">Held-out: {len(data["heldout"])} documented functions from standard-library modules the models never
trained on (split by module), at most {s["heldout_max_lines"]} code lines; prompt = the docstring's first
paragraph, reference = the function without its docstring. n = {s["n"]} candidates per prompt, ranked by the
model's own score (mean token log-probability). Syntax valid = fraction of candidates Python parses; exact match
after whitespace normalisation; BLEU = corpus BLEU-4 x100 with CoNaLa's tokenizer and CodeBLEU (Ren et al.) on
the first candidates; distinct-2 = distinct bigrams / all bigrams across a prompt's candidates. HumanEval:
{html.escape(str(s["humaneval_problems"] or 164))} problems, prompt = the first paragraph of the docstring; the
generated function is appended after the HumanEval prompt and renamed to the entry point, then the official
tests run in the sandbox. Models this small are expected to score near zero there: the number is reported as
measured.</p>
<h2>Training</h2>{figures[0]}
<h2>Results</h2>{"".join(figures[1:])}
<h3>Details</h3>{
        _table(
            [
                "model",
                "CodeBLEU n-gram",
                "CodeBLEU syntax",
                "CodeBLEU dataflow",
                "dataflow floor",
                "edit distance",
                "char-3gram cosine",
                "HumanEval solved",
                "HumanEval outcomes",
                "isolation",
            ],
            detail_rows,
        )
    }
<h2>Examples (held-out, top-ranked candidate)</h2>{_examples(data)}
<h2>Setup</h2>
<p>Corpus: {html.escape(json.dumps(corpus.get("records", {})))} functions mined from the standard library
(dropped: {html.escape(json.dumps(corpus.get("dropped", {})))}).</p>
{_table(["step", "wall s", "CPU s"], step_rows)}
<p class="note">CPU s counts this process and the processes it waited for (trainings, sandboxed programs); on a
busy machine wall time exceeds it, on an idle one parallel steps take less wall time than CPU time.</p>
<p>Settings: <code>{html.escape(json.dumps(s))}</code></p>
<p>Artifacts: <a href="../corpus/">corpus/</a> · <a href="../configs/">configs/</a> ·
<a href="../samples/">samples/</a> · <a href="../eval/">eval/</a> · <a href="summary.md">summary.md</a></p>"""
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>nl2code demo report</title>"
        f"<style>{CSS}</style></head><body>{body}</body></html>\n"
    )
    return atomic_write(report_dir / "index.html", page)
