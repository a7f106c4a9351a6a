"""NLC2CMD competition score (Agarwal et al. 2021; final ``metric_utils.compute_metric`` definition).

Implemented from the description in evaluation.md §4.8 on the project's own Bash analysis
(:func:`nl2code.eval.metrics.bash_template.analyse`): utilities in order of appearance (including
those inside pipelines, substitutions, ``xargs`` and ``find -exec``) with their flag sets; arguments
are ignored.
"""

from __future__ import annotations

from nl2code.eval.metrics.bash_template import analyse

__all__ = ["nlc2cmd_aggregate", "nlc2cmd_score"]


def nlc2cmd_score(pred: str, gold: str, confidence: float = 1.0) -> float:
    """NLC2CMD score of one prediction (final competition definition, evaluation.md §4.8).

    Utilities are compared position by position (the shorter list padded with None); a position
    scores ``δ·(1+f)/2`` when the names match (case-insensitive), with
    ``f = (2|Fp∩Fc| - |Fp∪Fc|) / max(1, |Fp|, |Fc|)`` (``f = 1`` when neither has flags), and ``-δ``
    otherwise; the score is the mean over positions. As written, ``f`` reaches -2 for disjoint flag
    sets of equal size (e.g. ``ls -a`` vs ``ls -l``), so a position scores in [-δ/2, δ] when names
    match; the formula is implemented as stated, not clipped. A prediction that does not parse has
    no utilities (score -δ). Arguments are ignored.
    """
    up, uc = analyse(pred).utilities, analyse(gold).utilities
    n = max(len(up), len(uc))
    if n == 0:
        return 0.0
    total = 0.0
    for i in range(n):
        a = up[i] if i < len(up) else None
        b = uc[i] if i < len(uc) else None
        if a is None or b is None or a.name.lower() != b.name.lower():
            total -= confidence
            continue
        if not a.flags and not b.flags:
            f = 1.0
        else:
            f = (2 * len(a.flags & b.flags) - len(a.flags | b.flags)) / max(1, len(a.flags), len(b.flags))
        total += confidence * (1 + f) / 2
    return total / n


def nlc2cmd_aggregate(scores: list[float]) -> float:
    """Score of one NL from its ranked predictions: the best if any is positive, else their mean."""
    if not scores:
        return -1.0
    best = max(scores)
    return best if best > 0 else sum(scores) / len(scores)
