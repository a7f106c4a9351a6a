"""The demo's next-word task, an editor's code completion: given a held-out function's description
and its code up to an identifier or keyword, name that word. Scored by exact match and edit similarity
(CodeXGLUE's completion metrics) against two baselines built from the training functions only:

* constant: the most frequent word in the training functions (the same answer for every row);
* retrieval: TF-IDF over the row's context (the description and the last two lines so far), answering
  with the word that followed the most similar training context.

Held-out functions come from modules never trained on, so no row's function is in the index.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections import Counter
from collections.abc import Iterable, Sequence
from statistics import mean
from typing import Any

from nl2code.eval.metrics.diversity import levenshtein
from nl2code.eval.metrics.exact_match import normalise_whitespace

_WORD = re.compile(r"[A-Za-z_]\w*")


def word_offsets(code: str) -> list[tuple[int, str]]:
    """(character offset, word) of every identifier and keyword after the first line (the signature),
    by Python's tokenizer; none when the code does not tokenize."""
    starts = [0]
    for line in code.split("\n"):
        starts.append(starts[-1] + len(line) + 1)
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        return []
    return [(starts[t.start[0] - 1] + t.start[1], t.string) for t in toks if t.type == tokenize.NAME and t.start[0] > 1]


def word_rows(functions: Iterable[dict[str, str]], per_function: int | None = None) -> list[dict[str, str]]:
    """Rows ``{task_id, nl, prefix, target}``: ``prefix`` is the code before a word with the
    whitespace before the word removed (the model writes it: the tokenizer joins it to the word),
    ``target`` the word. ``per_function`` keeps at most that many rows per function, spread evenly
    over its words (all when None)."""
    rows = []
    for f in functions:
        picks = word_offsets(f["code"])
        if per_function is not None and len(picks) > per_function:
            step = len(picks) / per_function
            picks = [picks[int(j * step)] for j in range(per_function)]
        for offset, word in picks:
            prefix = f["code"][:offset].rstrip()
            rows.append({"task_id": f"{f['task_id']}@{offset}", "nl": f["nl"], "prefix": prefix, "target": word})
    return rows


def first_word(continuation: str) -> str:
    """The word a model wrote after a prefix: the identifier or keyword its continuation starts with,
    after whitespace ("" when it starts with anything else)."""
    m = _WORD.match(continuation.lstrip())
    return m.group(0) if m else ""


def normalise(line: str) -> str:
    return normalise_whitespace(line.strip())


def edit_similarity(prediction: str, reference: str) -> float:
    """1 - Levenshtein distance / the longer length, on normalised strings (1.0 for two empty ones)."""
    a, b = normalise(prediction), normalise(reference)
    return 1.0 - levenshtein(a, b) / max(len(a), len(b), 1)


def completion_scores(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, Any]:
    """Exact match and mean edit similarity of ``predictions`` against ``targets`` (same order)."""
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
    exact = [normalise(p) == normalise(t) for p, t in zip(predictions, targets, strict=True)]
    sims = [edit_similarity(p, t) for p, t in zip(predictions, targets, strict=True)]
    return {
        "rows": len(targets),
        "exact_match": float(mean(exact)) if exact else 0.0,
        "edit_similarity": float(mean(sims)) if sims else 0.0,
    }


def context(row: dict[str, str]) -> str:
    """What the retrieval baseline compares: the description and the last two lines so far."""
    return row["nl"] + "\n" + "\n".join(row["prefix"].split("\n")[-2:])


class ConstantBaseline:
    """Answers every row with the most frequent target of the training rows (ties: the first seen)."""

    def __init__(self, train_rows: Sequence[dict[str, str]]):
        counts = Counter(normalise(r["target"]) for r in train_rows)
        self.answer = counts.most_common(1)[0][0] if counts else ""

    def predict(self, rows: Sequence[dict[str, str]]) -> list[str]:
        return [self.answer] * len(rows)


class RetrievalBaseline:
    """Answers with the word that followed the training context most similar (TF-IDF cosine) to the
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
    "first_word",
    "word_offsets",
    "word_rows",
    "completion_scores",
    "context",
    "normalise",
]
