"""CodeFusion's Excel conditional-formatting benchmark ("codefusion-cf"): execution match.

Problems: the 178 test rows of ``CFRuleBenchmarks.json``. The released test ``Labels`` are
placeholders, so both the gold and every candidate rule are *executed* on the row's ``Data`` with the
project's CF interpreter (:mod:`nl2code.eval.cf`, Excel semantics) and compared as
``(kind, formatted rows)``: a highlight rule and a colour scale marking the same rows differ.

* A candidate that does not parse or cannot run on the table is wrong.
* A gold rule that does not parse or run (6 test rows: Excel formulas, ``--``, an empty rule, a
  column the table lacks) falls back to exact match: a candidate is right when its whitespace-
  normalised text equals the gold's. These rows are counted in ``summary.json``.
* 60 test tables are header-only: every executable highlight rule formats nothing there, so
  ``execution_match_nonempty@k`` repeats the metric over tables with at least one data row.

``EvalContext.cf_semantics = "labels"`` (``nl2code eval codefusion-cf --cf-semantics labels``) executes
both sides with the conventions reverse-engineered from the train labels instead (see ``gold_report``);
the default is ``excel``.

Metrics: ``execution_match@k``, ``execution_match_nonempty@k``, ``exact_match@k`` (whitespace-
normalised), ``syntax_valid`` (fraction of candidates the CF parser accepts), diversity.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from nl2code.data.records import Record
from nl2code.eval.cf import EXCEL, LABELS, CFExecError, CFParseError, Formatting, Semantics, execute, parse_rule
from nl2code.eval.metrics.exact_match import exact_match
from nl2code.eval.tasks._text import diversity_metrics, load_split, missing_note, prefixed_id, topk_metrics
from nl2code.eval.tasks.base import CF_SEMANTICS, EvalContext, TaskResult

__all__ = ["CFRulesTask", "TASK", "gold_report", "run_rule"]

SEMANTICS = dict(zip(CF_SEMANTICS, (EXCEL, LABELS), strict=True))


def run_rule(code: str, table: list[list[Any]], semantics: Semantics = EXCEL) -> tuple[Formatting | None, str]:
    """(formatting, "") when ``code`` runs on ``table``, else (None, reason)."""
    try:
        return execute(parse_rule(code), table, semantics), ""
    except CFParseError as e:
        return None, f"parse_error: {e}"
    except CFExecError as e:
        return None, f"exec_error: {e}"


class CFRulesTask:
    name = "codefusion-cf"
    executes_code = False  # rules run in our own interpreter of the CF language, not as programs

    def load_problems(self, data_path: str | None) -> dict[str, Record]:
        example = "CFRuleBenchmarks.json, e.g. ../shared/data/codefusion/benchmarks/CFRuleBenchmarks.json"
        return load_split(self.name, "codefusion-cf", data_path, "test", example)

    def normalize_task_id(self, task_id: object) -> str:
        return prefixed_id("codefusion-cf", task_id)

    def judge(self, problems: dict[str, Record], samples: dict[str, list[str]], ctx: EvalContext) -> TaskResult:
        choice = ctx.cf_semantics
        if choice not in SEMANTICS:
            raise ValueError(f"cf_semantics must be one of {sorted(SEMANTICS)}, got {choice!r}")
        sem = SEMANTICS[choice]
        rows: list[dict] = []
        execution: dict[str, list[bool]] = {}
        exact: dict[str, list[bool]] = {}
        valid = total = 0
        gold_failures: dict[str, str] = {}
        for tid, problem in problems.items():
            table = problem.extras["table"]
            gold, why = run_rule(problem.code, table, sem)
            if gold is None:
                gold_failures[tid] = why
            execution[tid], exact[tid] = [], []
            for rank, cand in enumerate(samples.get(tid, [])):
                got, reason = run_rule(cand, table, sem)
                total += 1
                valid += not reason.startswith("parse_error")
                em = exact_match(cand, problem.code)
                if gold is None:
                    matched, reason = em, reason or "gold rule not executable: exact match used"
                else:
                    matched = got is not None and got == gold
                    reason = reason or ("" if matched else "different formatting")
                execution[tid].append(matched)
                exact[tid].append(em)
                rows.append({
                    "task_id": tid, "rank": rank, "completion": cand, "matched": matched,
                    "exact_match": em, "reason": reason,
                    "rows": None if got is None else sorted(got.rows), "kind": None if got is None else got.kind,
                })  # fmt: skip
        ids = list(problems)
        nonempty = [t for t in ids if len(problems[t].extras["table"]) > 1]
        metrics = topk_metrics("execution_match", execution, ctx.ks, ids)
        metrics |= topk_metrics("execution_match_nonempty", execution, ctx.ks, nonempty)
        metrics |= topk_metrics("exact_match", exact, ctx.ks, ids)
        metrics["syntax_valid"] = valid / total if total else 0.0
        div, n_div = diversity_metrics(samples, max(ctx.ks))
        metrics |= div
        extra = missing_note(problems, samples) | {
            "header_only_tables": len(ids) - len(nonempty),
            "gold_not_executable": len(gold_failures),
            "gold_not_executable_ids": sorted(gold_failures),
            "diversity_problems": n_div,
            "semantics": choice,
        }
        return TaskResult(rows, metrics, extra)


TASK = CFRulesTask()

# ---- gold validation on train ------------------------------------------------------------------

_RANK_HEADS = {"Top", "Bottom", "TopPercent", "BottomPercent", "AboveAverage", "BelowAverage"}
_CONVENTIONS = {
    "text_as_zero": "labels read text/blank cells as 0 in numeric rules",
    "duplicate_first": "labels of Duplicate() mark the first occurrence of every value",
    "blanks_inverted": "labels of Blanks() mark the non-blank cells",
    "bottom_le_kth_largest": "labels of bottom(k) mark values <= the k-th largest",
}


def _agreement(rows: frozenset[int] | set[int], labels: list[int], offset: int = 0) -> int:
    """Data rows whose label equals membership in ``rows``; label of data row i is labels[i+1+offset]."""
    n = len(labels) - 1
    return sum((i in rows) == bool(labels[i + 1 + offset]) for i in range(n) if 0 <= i + 1 + offset < len(labels))


def _reason(code: str, table: list, labels: list[int]) -> str:
    """Why executing ``code`` (Excel semantics) disagrees with ``labels``: the first explanation found."""
    n = len(labels) - 1
    for flag, text in _CONVENTIONS.items():
        got, _ = run_rule(code, table, replace(EXCEL, **{flag: True}))
        if got is not None and _agreement(got.rows, labels) == n:
            return f"label convention: {text}"
    labelled, _ = run_rule(code, table, LABELS)
    if labelled is not None and _agreement(labelled.rows, labels) == n:
        return "label conventions (several of the above)"
    for sem in (EXCEL, LABELS):
        got, _ = run_rule(code, table, sem)
        for off in (-1, 1):
            if got is not None and _agreement(got.rows, labels, off) >= n - 1:
                return "labels shifted by one row"
    head = parse_rule(code).head
    if n == 100 and head in _RANK_HEADS:
        return "rank/average rule on a table cut at 100 rows (labels likely from the full column)"
    return "unexplained"


def gold_report(benchmark_json: str) -> dict:
    """How well gold rules executed on train ``Data`` reproduce the train ``Labels``.

    Only train rows whose ``Labels`` has one entry per table row (header included) and at least one
    data row are compared. Agreement is reported under Excel semantics (used for execution match)
    and under the labeller's conventions reverse-engineered from the labels (``LABELS``); every
    disagreeing item gets a reason.
    """
    from nl2code.data.sources import load_source

    records = load_source("codefusion-cf", benchmark_json).records
    train = [r for r in records if r.split == "train"]
    test = [r for r in records if r.split == "test"]
    counts: Counter = Counter()
    rows_total = 0
    agree = {"excel": 0, "labels": 0}
    items_agree = {"excel": 0, "labels": 0}
    reasons: Counter = Counter()
    reason_rows: Counter = Counter()
    by_head: dict[str, list[int]] = {}
    examples: list[dict] = []
    for r in train:
        table, labels = r.extras["table"], r.extras["labels"]
        if len(table) <= 1:
            counts["header_only"] += 1
            continue
        if len(labels) != len(table):
            counts["placeholder_labels" if labels == [0] else "label_length_mismatch"] += 1
            continue
        counts["compared"] += 1
        n = len(table) - 1
        rows_total += n
        excel, why = run_rule(r.code, table, EXCEL)
        if excel is None:
            key = why.split(":")[0]
            reasons[key] += 1
            reason_rows[key] += n
            examples.append({"id": r.extras["id"], "code": r.code[:80], "reason": why[:120]})
            continue
        labelled, _ = run_rule(r.code, table, LABELS)
        a_excel, a_labels = _agreement(excel.rows, labels), _agreement(labelled.rows, labels)
        agree["excel"] += a_excel
        agree["labels"] += a_labels
        items_agree["excel"] += a_excel == n
        items_agree["labels"] += a_labels == n
        head = by_head.setdefault(parse_rule(r.code).head, [0, 0, 0])
        head[0] += n
        head[1] += a_excel
        head[2] += a_labels
        if a_excel < n:
            reason = _reason(r.code, table, labels)
            reasons[reason] += 1
            reason_rows[reason] += n - a_excel
            if reason == "unexplained":
                examples.append({"id": r.extras["id"], "code": r.code[:80], "rows": n, "disagree": n - a_excel})
    compared = counts["compared"]
    test_ok = sum(run_rule(r.code, r.extras["table"])[0] is not None for r in test)
    return {
        "train_items": len(train),
        "compared_items": compared,
        "skipped": {k: v for k, v in counts.items() if k != "compared"},
        "compared_rows": rows_total,
        "row_agreement_excel": agree["excel"] / rows_total if rows_total else 0.0,
        "row_agreement_labels": agree["labels"] / rows_total if rows_total else 0.0,
        "item_agreement_excel": items_agree["excel"] / compared if compared else 0.0,
        "item_agreement_labels": items_agree["labels"] / compared if compared else 0.0,
        "disagreeing_items_by_reason": dict(reasons.most_common()),
        "disagreeing_rows_by_reason": dict(reason_rows.most_common()),
        "by_head": {h: {"rows": v[0], "excel": v[1] / v[0], "labels": v[2] / v[0]} for h, v in sorted(by_head.items())},
        "examples": examples[:20],
        "test_items": len(test),
        "test_gold_executable": test_ok,
        "test_header_only": sum(len(r.extras["table"]) <= 1 for r in test),
    }
