"""``nl2code report``: one self-contained HTML page comparing any training runs and evaluations.

Inputs are folders: a *run* (``nl2code train --run-dir``: its config and ``metrics.jsonl``) and an
*evaluation* (``nl2code eval --out``: ``summary.json`` + ``results.jsonl``). A run's sub-folders that
are evaluations are attached to it, so ``nl2code report runs/a runs/b`` finds ``runs/a/eval``.

The page needs nothing beside it: charts are inline SVG drawn here, and the samples are embedded as
JSON and rendered by a few lines of script with ``textContent`` only (generated code is data, never
markup). Everything is read back from files, so a report can be rebuilt at any time.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nl2code.errors import UserError
from nl2code.rundir import RunDir
from nl2code.train.runlog import METRICS_FILE
from nl2code.utils.io import atomic_write

SUMMARY_FILE, RESULTS_FILE = "summary.json", "results.jsonl"  # written by nl2code.eval.harness
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


class ReportError(UserError):
    """An input folder is neither a run nor an evaluation, or one of its files is unreadable."""


@dataclass
class Evaluation:
    label: str
    summary: dict[str, Any]
    results: list[dict[str, Any]]


@dataclass
class Run:
    label: str
    log: list[dict[str, Any]]
    evaluations: list[Evaluation] = field(default_factory=list)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ReportError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
        if isinstance(row, dict):
            rows.append(row)
    return rows


def is_evaluation(folder: Path) -> bool:
    return (folder / SUMMARY_FILE).is_file()


def read_evaluation(folder: Path, label: str) -> Evaluation:
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ReportError(f"{folder / SUMMARY_FILE}: unreadable ({e})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("metrics"), dict):
        raise ReportError(f"{folder / SUMMARY_FILE}: not an nl2code eval summary (no 'metrics')")
    results = _read_jsonl(folder / RESULTS_FILE) if (folder / RESULTS_FILE).is_file() else []
    return Evaluation(label, summary, results)


def read_inputs(paths: list[str]) -> tuple[list[Run], list[Evaluation]]:
    """Runs (with their attached evaluations) and stand-alone evaluations, in the order given."""
    runs, evals = [], []
    for raw in paths:
        folder = Path(raw)
        if not folder.is_dir():
            raise ReportError(f"{raw}: no such folder")
        label = folder.name or str(folder)
        if is_evaluation(folder):
            evals.append(read_evaluation(folder, label))
            continue
        metrics = folder / METRICS_FILE
        if not RunDir(folder).config_file.is_file() and not metrics.is_file():
            raise ReportError(
                f"{raw}: neither a run (no config or {METRICS_FILE}) nor an evaluation (no {SUMMARY_FILE})"
            )
        run = Run(label, _read_jsonl(metrics) if metrics.is_file() else [])
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and is_evaluation(p)):
            run.evaluations.append(read_evaluation(sub, f"{label}/{sub.name}"))
        runs.append(run)
    return runs, evals


# -- charts ---------------------------------------------------------------------------------------


def loss_curves(log: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Train and eval loss against one global step axis (stages laid end to end, in log order)."""
    order: list[str] = []
    last: dict[str, int] = {}
    for r in log:
        stage = str(r.get("stage", "main"))
        order += [stage] if stage not in order else []
        last[stage] = max(last.get(stage, 0), int(r.get("step", 0)))
    offset, total = {}, 0
    for stage in order:
        offset[stage], total = total, total + last[stage]
    curves: dict[str, list[tuple[float, float]]] = {"train": [], "eval": []}
    for r in log:
        loss = r.get("loss")
        if r.get("split") in curves and isinstance(loss, int | float) and math.isfinite(loss):
            curves[r["split"]].append((offset[str(r.get("stage", "main"))] + int(r["step"]), float(loss)))
    return curves


def svg_chart(series: dict[str, list[tuple[float, float]]], title: str, xlabel: str, ylabel: str) -> str:
    """A line chart (points marked) as inline SVG; an empty chart says there is nothing to draw."""
    w, h, left, right, top, bottom = 520, 280, 56, 130, 28, 40
    points = [p for pts in series.values() for p in pts]
    head = f'<svg class="chart" width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}">'
    head += f'<text x="{left}" y="16" font-weight="bold">{html.escape(title)}</text>'
    if not points:
        return head + f'<text x="{left}" y="{h // 2}">nothing to plot</text></svg>'
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(min(ys), 0.0), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (w - left - right)

    def sy(y: float) -> float:
        return h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)

    parts = [head]
    parts.append(f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="#444"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#444"/>')
    for frac in (0.0, 0.5, 1.0):
        yv, xv = y0 + frac * (y1 - y0), x0 + frac * (x1 - x0)
        parts.append(f'<text x="{left - 4}" y="{sy(yv) + 4:.1f}" text-anchor="end" font-size="11">{yv:.3g}</text>')
        parts.append(
            f'<text x="{sx(xv):.1f}" y="{h - bottom + 14}" text-anchor="middle" font-size="11">{xv:.3g}</text>'
        )
    parts.append(
        f'<text x="{(left + w - right) / 2}" y="{h - 6}" text-anchor="middle" font-size="12">'
        f"{html.escape(xlabel)}</text>"
    )
    parts.append(
        f'<text x="12" y="{(top + h - bottom) / 2}" font-size="12" transform="rotate(-90 12 '
        f'{(top + h - bottom) / 2})" text-anchor="middle">{html.escape(ylabel)}</text>'
    )
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(pts))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{coords}"/>')
        parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.2" fill="{color}"/>' for x, y in pts]
        ly = top + 14 * i + 8
        parts.append(f'<rect x="{w - right + 8}" y="{ly - 8}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{w - right + 22}" y="{ly + 1}" font-size="11">{html.escape(name[:20])}</text>')
    return "".join(parts) + "</svg>"


_AT_K = re.compile(r"^(.+)@(\d+)$")


def topk_series(evals: list[Evaluation]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """metric name -> evaluation label -> [(k, value)] for every ``name@k`` metric with several ks."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for ev in evals:
        for key, value in ev.summary["metrics"].items():
            m = _AT_K.match(key)
            if m and isinstance(value, int | float):
                out.setdefault(m.group(1), {}).setdefault(ev.label, []).append((int(m.group(2)), float(value)))
    return {name: s for name, s in out.items() if any(len(v) > 1 for v in s.values())}


# -- the page -------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def metrics_table(evals: list[Evaluation]) -> str:
    names: list[str] = []
    for ev in evals:
        names += [k for k, v in ev.summary["metrics"].items() if k not in names and isinstance(v, int | float)]
    head = "".join(f"<th>{html.escape(ev.label)}</th>" for ev in evals)
    tasks = "".join(f"<td>{html.escape(str(ev.summary.get('task')))}</td>" for ev in evals)
    rows = [f"<tr><th>task</th>{tasks}</tr>"]
    for name in names:
        cells = "".join(f"<td>{_fmt(ev.summary['metrics'].get(name))}</td>" for ev in evals)
        rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    problems = "".join(f"<td>{_fmt(ev.summary.get('counts', {}).get('problems'))}</td>" for ev in evals)
    rows.append(f"<tr><th>problems</th>{problems}</tr>")
    return f'<table id="metrics"><tr><th>metric</th>{head}</tr>{"".join(rows)}</table>'


def verdict(row: dict[str, Any]) -> str:
    """pass / fail from the sandbox's verdict, else from exact match; '' when the task gives neither."""
    for key in ("passed", "matched"):
        if isinstance(row.get(key), bool):
            return "pass" if row[key] else "fail"
    return ""


def sample_rows(evals: list[Evaluation]) -> list[dict[str, Any]]:
    """Every result row of every evaluation, reduced to what the browser shows."""
    out = []
    for ev in evals:
        for r in ev.results:
            completion = r.get("completion", "")
            out.append({
                "eval": ev.label,
                "task_id": str(r.get("task_id", "")),
                "rank": r.get("rank", 0),
                "verdict": verdict(r),
                "completion": completion if isinstance(completion, str) else json.dumps(completion),
                "reference": str(r.get("reference", "")),
                "nl": str(r.get("nl", "")),
                "reason": str(r.get("reason", "") or r.get("status", "")),
            })  # fmt: skip
    return out


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; font-size: 13px; }
pre { margin: 0; white-space: pre-wrap; max-width: 48em; font-size: 12px; }
.pass { background: #e6f4e6; } .fail { background: #fbe9e9; }
.chart { margin: 0 1em 1em 0; border: 1px solid #eee; }
#controls > * { margin-right: .6em; }
"""

SCRIPT = """
const rows = JSON.parse(document.getElementById('samples-data').textContent);
const PAGE = 25;
let page = 0;
const $ = (id) => document.getElementById(id);
function matching() {
  const ev = $('f-eval').value, v = $('f-verdict').value, q = $('f-text').value.toLowerCase();
  return rows.filter(r => (!ev || r.eval === ev) && (!v || r.verdict === v) &&
    (!q || (r.task_id + ' ' + r.nl + ' ' + r.completion + ' ' + r.reference).toLowerCase().includes(q)));
}
function cell(tr, text, pre) {
  const td = document.createElement('td');
  if (pre) { const p = document.createElement('pre'); p.textContent = text; td.appendChild(p); }
  else td.textContent = text;
  tr.appendChild(td);
}
function render() {
  const found = matching();
  const pages = Math.max(1, Math.ceil(found.length / PAGE));
  page = Math.min(page, pages - 1);
  const body = $('samples-body');
  body.replaceChildren();
  for (const r of found.slice(page * PAGE, (page + 1) * PAGE)) {
    const tr = document.createElement('tr');
    tr.className = 'sample ' + r.verdict;
    cell(tr, r.eval); cell(tr, r.task_id); cell(tr, String(r.rank + 1));
    cell(tr, r.verdict || '—'); cell(tr, r.nl, true); cell(tr, r.completion, true);
    cell(tr, r.reference, true); cell(tr, r.reason);
    body.appendChild(tr);
  }
  $('count').textContent = found.length + ' of ' + rows.length + ' samples · page ' + (page + 1) + ' of ' + pages;
}
for (const id of ['f-eval', 'f-verdict', 'f-text']) $(id).addEventListener('input', () => { page = 0; render(); });
$('prev').addEventListener('click', () => { page = Math.max(0, page - 1); render(); });
$('next').addEventListener('click', () => { page += 1; render(); });
render();
"""


def render(runs: list[Run], evals: list[Evaluation]) -> str:
    """The whole page."""
    all_evals = [ev for run in runs for ev in run.evaluations] + evals
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>nl2code report</title><style>{STYLE}</style>"
        "</head><body><h1>nl2code report</h1>"
    ]
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    labels = ", ".join(html.escape(x.label) for x in [*runs, *evals])
    parts.append(f"<p>{labels} · built {created}</p>")
    parts.append("<h2>Metrics side by side</h2>")
    parts.append(metrics_table(all_evals) if all_evals else "<p>no evaluations given</p>")
    parts.append("<h2>Loss curves</h2>")
    parts += [svg_chart(loss_curves(run.log), run.label, "step", "loss") for run in runs] or ["<p>no runs given</p>"]
    curves = topk_series(all_evals)
    parts.append("<h2>Top-k curves</h2>")
    parts += [svg_chart(series, f"{name}@k", "k", name) for name, series in curves.items()] or [
        "<p>no metric with several k</p>"
    ]
    samples = sample_rows(all_evals)
    options = "".join(f"<option>{html.escape(ev.label)}</option>" for ev in all_evals)
    parts.append(
        "<h2>Samples</h2><div id='controls'>"
        f"<select id='f-eval'><option value=''>every evaluation</option>{options}</select>"
        "<select id='f-verdict'><option value=''>pass and fail</option><option value='pass'>pass</option>"
        "<option value='fail'>fail</option></select>"
        "<input id='f-text' type='search' placeholder='filter by text'>"
        "<button id='prev'>previous</button><button id='next'>next</button><span id='count'></span></div>"
        "<table id='samples'><thead><tr><th>evaluation</th><th>task</th><th>rank</th><th>verdict</th>"
        "<th>description</th><th>candidate</th><th>reference</th><th>reason</th></tr></thead>"
        "<tbody id='samples-body'></tbody></table>"
    )
    data = json.dumps(samples, ensure_ascii=False).replace("</", "<\\/")  # cannot close the script element
    parts.append(f"<script type='application/json' id='samples-data'>{data}</script><script>{SCRIPT}</script>")
    return "".join(parts) + "</body></html>\n"


def build_report(paths: list[str], out_dir: str | Path) -> Path:
    """Read the runs and evaluations at ``paths`` and write ``out_dir/index.html``; returns its path."""
    runs, evals = read_inputs(paths)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    atomic_write(page, render(runs, evals))
    return page


__all__ = ["Evaluation", "ReportError", "Run", "build_report", "loss_curves", "read_inputs", "render", "svg_chart"]
