"""The demo's next-line task: given a held-out function's description and its first lines, predict
the next line. Scored like CodeXGLUE's line-level completion (exact match and edit similarity of the
line, whitespace-normalised), against two baselines built from the training functions only:

* constant: the most frequent line in the training functions (the same answer for every row);
* retrieval: TF-IDF over the row's context (the description and the lines so far), answering with
  the line that followed the most similar context in training.

Held-out functions come from modules never trained on, so no row's function is in the index.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from statistics import mean
from typing import Any

from nl2code.eval.metrics.diversity import levenshtein
from nl2code.eval.metrics.exact_match import normalise_whitespace


def line_rows(functions: Iterable[dict[str, str]], per_function: int | None = None) -> list[dict[str, str]]:
    """Rows ``{task_id, nl, prefix, target}`` of every non-blank line after a function's first.

    ``prefix`` is the function's lines before the target, ending in a newline (the model continues
    it); ``target`` is the line, stripped. ``per_function`` keeps at most that many rows per function,
    spread evenly over its lines (all when None).
    """
    rows = []
    for f in functions:
        lines = f["code"].split("\n")
        picks = [i for i in range(1, len(lines)) if lines[i].strip()]
        if per_function is not None and len(picks) > per_function:
            step = len(picks) / per_function
            picks = [picks[int(j * step)] for j in range(per_function)]
        for i in picks:
            prefix = "\n".join(lines[:i]) + "\n"
            rows.append({"task_id": f"{f['task_id']}:{i}", "nl": f["nl"], "prefix": prefix, "target": lines[i].strip()})
    return rows


def normalise(line: str) -> str:
    return normalise_whitespace(line.strip())


def edit_similarity(prediction: str, reference: str) -> float:
    """1 - Levenshtein distance / the longer length, on normalised lines (1.0 for two empty lines)."""
    a, b = normalise(prediction), normalise(reference)
    return 1.0 - levenshtein(a, b) / max(len(a), len(b), 1)


def line_scores(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, Any]:
    """Exact match and mean edit similarity of ``predictions`` against ``targets`` (same order)."""
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
    exact = [normalise(p) == normalise(t) for p, t in zip(predictions, targets, strict=True)]
    sims = [edit_similarity(p, t) for p, t in zip(predictions, targets, strict=True)]
    return {
        "rows": len(targets),
        "exact_match": mean(exact) if exact else 0.0,
        "edit_similarity": mean(sims) if sims else 0.0,
    }


def first_line(continuation: str) -> str:
    """The line a model wrote after a prefix that ended in a newline: its first non-blank line."""
    return next((line.strip() for line in continuation.split("\n") if line.strip()), "")


def context(row: dict[str, str]) -> str:
    """What the retrieval baseline compares: the description and the function's lines so far."""
    return row["nl"] + "\n" + row["prefix"]


class ConstantBaseline:
    """Answers every row with the most frequent normalised line of the training rows (ties: the first seen)."""

    def __init__(self, train_rows: Sequence[dict[str, str]]):
        counts = Counter(normalise(r["target"]) for r in train_rows)
        self.answer = counts.most_common(1)[0][0] if counts else ""

    def predict(self, rows: Sequence[dict[str, str]]) -> list[str]:
        return [self.answer] * len(rows)


class RetrievalBaseline:
    """Answers with the line that followed the training context most similar (TF-IDF cosine) to the
    row's :func:`context`; ties go to the first training row, no shared word to the constant answer."""

    def __init__(self, train_rows: Sequence[dict[str, str]]):
        from nl2code.data.retrieval import TfIdf

        self.targets = [r["target"] for r in train_rows]
        self.index = TfIdf([context(r) for r in train_rows])
        self.fallback = ConstantBaseline(train_rows).answer

    def predict(self, rows: Sequence[dict[str, str]]) -> list[str]:
        out = []
        for r in rows:
            scores = self.index.scores(context(r))
            best = int(scores.argmax()) if len(scores) else -1  # argmax: the first of equal scores
            out.append(self.targets[best] if best >= 0 and scores[best] > 0 else self.fallback)
        return out


__all__ = [
    "ConstantBaseline",
    "RetrievalBaseline",
    "edit_similarity",
    "first_line",
    "line_rows",
    "line_scores",
    "context",
    "normalise",
]
