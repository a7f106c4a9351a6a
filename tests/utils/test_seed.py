"""Seeded subsets: a benchmark's --limit is a random sample in file order, never a prefix."""

from __future__ import annotations

from nl2code.utils.seed import seeded_subset


def test_seeded_subset_is_random_ordered_reproducible_and_whole_without_a_limit():
    items = list(range(1000))
    a = seeded_subset(items, 50, seed=3)
    assert a == seeded_subset(items, 50, seed=3) and a != seeded_subset(items, 50, seed=4)
    assert a == sorted(a) and len(set(a)) == 50 and a != items[:50] and max(a) > 500
    assert seeded_subset(items, None) == items and seeded_subset(items, 5000) == items
