"""CodeBLEU (Ren et al. 2020) through the ``codebleu`` package (k4black/codebleu 0.7.0, pinned).

``codebleu = 0.25·ngram + 0.25·weighted_ngram + 0.25·syntax + 0.25·(dataflow or 1)``: the package
replaces a data-flow score of 0 by 1 (evaluation.md §4.5). That happens when the reference has no
data-flow edges (common for one-liners) or none of them is matched, and it inflates scores, so
:func:`codebleu` also scores every pair on its own and counts the pairs at this *dataflow floor*.

Another quirk kept as published: the n-gram parts (NLTK-style) give each hypothesis shorter than n
tokens a denominator of 1 with no match at order n, so a prediction identical to its reference
does not score 1 when snippets are short (CoNaLa gold against itself: codebleu 0.933).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["CodeBleuResult", "codebleu"]

COMPONENTS = ("ngram_match_score", "weighted_ngram_match_score", "syntax_match_score", "dataflow_match_score")


@dataclass(frozen=True)
class CodeBleuResult:
    """Corpus scores in [0, 1] plus the per-pair scores behind ``dataflow_floor``."""

    codebleu: float
    ngram_match: float
    weighted_ngram_match: float
    syntax_match: float
    dataflow_match: float
    dataflow_floor: int  # pairs whose own data-flow score is 0 (replaced by 1 in their CodeBLEU)
    per_sample: tuple[dict[str, float], ...]

    def as_metrics(self, prefix: str = "codebleu") -> dict[str, float]:
        return {
            prefix: self.codebleu,
            f"{prefix}_ngram": self.ngram_match,
            f"{prefix}_weighted_ngram": self.weighted_ngram_match,
            f"{prefix}_syntax": self.syntax_match,
            f"{prefix}_dataflow": self.dataflow_match,
            f"{prefix}_dataflow_floor": float(self.dataflow_floor),
        }


@contextmanager
def _quiet() -> Iterator[None]:
    """codebleu logs a warning through the root logger for every pair without data flow."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def codebleu(
    references: Sequence[str],
    predictions: Sequence[str],
    lang: str = "python",
    weights: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25),
    per_sample: bool = True,
) -> CodeBleuResult:
    """Corpus CodeBLEU of ``predictions`` against one reference each (and per-pair scores)."""
    from codebleu import calc_codebleu

    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references for {len(predictions)} predictions")
    if not references:
        return CodeBleuResult(0.0, 0.0, 0.0, 0.0, 0.0, 0, ())
    with _quiet():
        corpus = calc_codebleu(list(references), list(predictions), lang=lang, weights=weights)
        pairs = (
            tuple(calc_codebleu([r], [p], lang=lang, weights=weights) for r, p in zip(references, predictions))
            if per_sample
            else ()
        )
    floor = sum(1 for s in pairs if s["dataflow_match_score"] == 0)
    return CodeBleuResult(
        corpus["codebleu"],
        corpus["ngram_match_score"],
        corpus["weighted_ngram_match_score"],
        corpus["syntax_match_score"],
        corpus["dataflow_match_score"],
        floor,
        pairs,
    )
