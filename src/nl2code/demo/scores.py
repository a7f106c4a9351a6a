"""The demo's scores: text metrics on held-out functions and pass@k from HumanEval result rows.

Curves are lists indexed by k - 1 for k = 1..n ("any of the first k candidates", the CodeFusion
convention for text metrics; the unbiased estimator for pass@k).
"""

from __future__ import annotations

import re
from collections import Counter
from statistics import mean
from typing import Any

from nl2code.eval.metrics.bleu import compute_bleu, conala_bleu, tokenize_for_bleu_eval
from nl2code.eval.metrics.codebleu import codebleu
from nl2code.eval.metrics.diversity import diversity
from nl2code.eval.metrics.exact_match import exact_match, rates_at_k
from nl2code.eval.metrics.pass_at_k import mean_pass_at_k
from nl2code.eval.metrics.syntax import python_valid


def sentence_bleu(reference: str, prediction: str) -> float:
    """Smoothed (add-one) sentence BLEU-4 x100 under CoNaLa's tokenizer; defined for short snippets."""
    return (
        100.0
        * compute_bleu([[tokenize_for_bleu_eval(reference)]], [tokenize_for_bleu_eval(prediction)], smooth=True).bleu
    )


def heldout_scores(refs: dict[str, str], samples: dict[str, list[str]], n: int) -> dict[str, Any]:
    """Scores of ranked candidates (task_id -> up to n candidates) against one reference each.

    Returns corpus BLEU and CodeBLEU of the first candidates, the fraction of syntactically valid
    candidates, mean diversity among each problem's candidates, and the top-k curves of syntax
    validity, exact match (whitespace-normalised) and best sentence BLEU.
    """
    ids = list(refs)
    cands = {t: samples.get(t, [])[:n] for t in ids}
    valid = {t: [python_valid(c) for c in cands[t]] for t in ids}
    exact = {t: [exact_match(c, refs[t]) for c in cands[t]] for t in ids}
    ks = list(range(1, n + 1))
    sent = {t: [sentence_bleu(refs[t], c) for c in cands[t]] for t in ids}
    best_bleu = [mean(max(sent[t][:k], default=0.0) for t in ids) if ids else 0.0 for k in ks]
    firsts = [(cands[t] or [""])[0] for t in ids]
    refs_list = [refs[t] for t in ids]
    cb = codebleu(refs_list, firsts, lang="python")
    per = [diversity(c) for c in cands.values() if len(c) >= 2]
    div = {
        key: mean(d[key] for d in per if d[key] is not None)
        for key in (per[0] if per else {})
        if any(d[key] is not None for d in per)
    }
    total = sum(len(c) for c in cands.values())
    return {
        "problems": len(ids),
        "candidates": total,
        "syntax_valid": sum(sum(v) for v in valid.values()) / total if total else 0.0,
        "bleu": conala_bleu(refs_list, firsts),
        "codebleu": cb.codebleu,
        "codebleu_parts": {
            "ngram": cb.ngram_match,
            "weighted_ngram": cb.weighted_ngram_match,
            "syntax": cb.syntax_match,
            "dataflow": cb.dataflow_match,
        },
        "codebleu_dataflow_floor": cb.dataflow_floor,
        "diversity": div,
        "at_k": {
            "syntax_valid": list(rates_at_k(valid, ks, ids).values()),
            "exact_match": list(rates_at_k(exact, ks, ids).values()),
            "best_bleu": best_bleu,
        },
    }


_EXC = re.compile(r"\b([A-Z]\w*(?:Error|Exception|Exit|Interrupt))\b")


def outcome(row: dict) -> str:
    """A short class of a result row: ``passed``, ``timeout``, ``error: NameError`` ..."""
    if row.get("passed"):
        return "passed"
    status, reason = str(row.get("status", "")), str(row.get("reason", ""))
    m = _EXC.search(reason)
    return f"{status}: {m.group(1)}" if m else (status or reason or "failed")


def humaneval_scores(rows: list[dict], n: int) -> dict[str, Any]:
    """pass@k for k = 1..n over the problems that have samples (from the harness's results rows)."""
    per: dict[str, list[bool]] = {}
    statuses: Counter[str] = Counter()
    for r in rows:
        per.setdefault(r["task_id"], []).append(bool(r["passed"]))
        statuses[outcome(r)] += 1
    counts = [(len(v), sum(v)) for v in per.values()]
    metrics, _ = mean_pass_at_k(counts, range(1, n + 1))
    curve = [metrics.get(f"pass@{k}", float("nan")) for k in range(1, n + 1)]
    return {
        "problems": len(per),
        "samples": len(rows),
        "solved": sum(1 for v in per.values() if any(v)),
        "at_k": {"pass": curve},
        "outcomes": dict(statuses.most_common(8)),
    }
