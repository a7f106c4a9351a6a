"""Exact match and the "any of the first k" aggregation the non-execution metrics share.

CodeFusion-style top-k (evaluation.md §4.2): a problem counts at @k when ANY of its first k candidates
is correct. A problem without candidates counts as wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

__all__ = ["any_at_k", "exact_match", "normalise_whitespace", "rates_at_k"]


def normalise_whitespace(text: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    return " ".join(text.split())


def exact_match(prediction: str, reference: str, normalise: Callable[[str], str] = normalise_whitespace) -> bool:
    """Equality after ``normalise`` (whitespace-normalised by default)."""
    return normalise(prediction) == normalise(reference)


def any_at_k(correct: Sequence[bool], k: int) -> bool:
    """True when any of the first ``k`` ranked candidates is correct."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return any(correct[:k])


def rates_at_k(correct: Mapping[str, Sequence[bool]], ks: Sequence[int], problems: Sequence[str]) -> dict[int, float]:
    """Fraction of ``problems`` solved at each k (problems missing from ``correct`` count as wrong)."""
    if not problems:
        return {k: 0.0 for k in ks}
    return {k: sum(any_at_k(correct.get(p, ()), k) for p in problems) / len(problems) for k in ks}
