"""Diversity among candidates: identical candidates are minimally diverse."""

from __future__ import annotations

import pytest

from nl2code.eval.metrics.diversity import distinct_n, diversity, levenshtein, pairwise_embedding_similarity


def test_identical_candidates():
    d = diversity(["ls -la /tmp"] * 4)
    assert d["distinct_1"] == pytest.approx(1 / 4) and d["distinct_2"] == pytest.approx(1 / 4)
    assert d["edit_distance"] == 0.0
    assert d["embedding_similarity"] == pytest.approx(1.0)


def test_different_candidates():
    d = diversity(["ls -la /tmp", "find . -name x", "du -sh ."])
    assert d["distinct_1"] == pytest.approx(9 / 10)  # "." appears twice among 10 tokens
    assert d["distinct_2"] == 1.0
    assert 0.5 < d["edit_distance"] <= 1.0
    assert d["embedding_similarity"] < 0.2


def test_levenshtein_and_normalisation():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3 and levenshtein("abc", "abc") == 0
    assert diversity(["abc", "abd"])["edit_distance"] == pytest.approx(1 / 3)


def test_single_candidate_has_no_pairs_and_custom_embedding():
    d = diversity(["x"])
    assert d["edit_distance"] is None and d["embedding_similarity"] is None
    assert distinct_n([], 1) == 0.0
    sim = pairwise_embedding_similarity(["a", "b"], embed=lambda s: [1.0, 0.0] if s == "a" else [0.0, 1.0])
    assert sim == 0.0
