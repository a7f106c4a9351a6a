"""Diversity among the k candidates of one problem.

* ``distinct_n``: distinct n-grams / all n-grams over the candidates' whitespace tokens, pooled
  (1.0 = no n-gram repeats; k identical candidates give at most 1/k).
* ``edit_distance``: mean over candidate pairs of the character Levenshtein distance divided by the
  longer length (0 = identical, 1 = nothing shared).
* ``embedding_similarity``: mean pairwise cosine similarity of candidate embeddings; the default
  embedding is the bag of character 3-grams of the text padded with one space each side
  (counts, no weighting), a cheap stand-in for a neural encoder; pass ``embed`` to use another.

Fewer than two candidates have no pairs: pairwise measures are then ``None``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import combinations

__all__ = ["char_ngram_embedding", "distinct_n", "diversity", "levenshtein", "pairwise_edit_distance",
           "pairwise_embedding_similarity"]  # fmt: skip

Embedding = Callable[[str], "Counter[str] | Sequence[float]"]


def distinct_n(candidates: Sequence[str], n: int) -> float:
    grams: list[tuple[str, ...]] = []
    for c in candidates:
        toks = c.split()
        grams += [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def pairwise_edit_distance(candidates: Sequence[str]) -> float | None:
    pairs = list(combinations(candidates, 2))
    if not pairs:
        return None
    return sum(levenshtein(a, b) / max(len(a), len(b), 1) for a, b in pairs) / len(pairs)


def char_ngram_embedding(text: str, n: int = 3) -> Counter[str]:
    padded = f" {text} "
    return Counter(padded[i : i + n] for i in range(max(1, len(padded) - n + 1)))


def _cosine(u: Counter[str] | Sequence[float], v: Counter[str] | Sequence[float]) -> float:
    if isinstance(u, Counter) and isinstance(v, Counter):
        dot = sum(c * v[k] for k, c in u.items())
        nu, nv = math.sqrt(sum(c * c for c in u.values())), math.sqrt(sum(c * c for c in v.values()))
    else:
        dot = sum(float(a) * float(b) for a, b in zip(u, v, strict=True))
        nu, nv = math.sqrt(sum(float(a) ** 2 for a in u)), math.sqrt(sum(float(b) ** 2 for b in v))
    return dot / (nu * nv) if nu and nv else 0.0


def pairwise_embedding_similarity(candidates: Sequence[str], embed: Embedding | None = None) -> float | None:
    embed = embed or char_ngram_embedding
    vectors = [embed(c) for c in candidates]
    pairs = list(combinations(vectors, 2))
    if not pairs:
        return None
    return sum(_cosine(u, v) for u, v in pairs) / len(pairs)


def diversity(candidates: Sequence[str], embed: Embedding | None = None) -> dict[str, float | None]:
    """All diversity measures of one problem's candidates."""
    return {
        "distinct_1": distinct_n(candidates, 1),
        "distinct_2": distinct_n(candidates, 2),
        "edit_distance": pairwise_edit_distance(candidates),
        "embedding_similarity": pairwise_embedding_similarity(candidates, embed),
    }
