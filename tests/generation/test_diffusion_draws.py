"""best_distinct: the n best candidates of distinct text, repeats only to fill up."""

from __future__ import annotations

from nl2code.generation.diffusion import best_distinct
from nl2code.generation.types import Candidate


def test_best_distinct_skips_repeats_and_fills_up_with_them():
    ranked = [Candidate(t, s) for t, s in [("a", -0.1), ("a", -0.2), ("b", -0.3), ("a", -0.4), ("c", -0.5)]]
    assert [c.text for c in best_distinct(ranked, 3)] == ["a", "b", "c"]
    assert [c.score for c in best_distinct(ranked, 4)] == [-0.1, -0.3, -0.5, -0.2]  # then the best repeat
    assert [c.text for c in best_distinct(ranked[:2], 2)] == ["a", "a"]
    assert best_distinct(ranked, 1) == [ranked[0]]
