from __future__ import annotations

from math import comb

import pytest

from nl2code.eval.metrics.pass_at_k import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 3), (10, 3, 5), (20, 1, 10), (7, 7, 2)])
def test_matches_the_binomial_definition(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), abs=1e-12)


def test_pass_at_1_is_the_fraction_correct():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)


def test_stable_for_large_n_where_binomials_overflow_floats():
    # The product form agrees with the exact integer binomials at large n.
    exact = 1 - comb(1900, 100) / comb(2000, 100)
    assert pass_at_k(2000, 100, 100) == pytest.approx(exact, rel=1e-9)
    assert 0.0 <= pass_at_k(5000, 1, 200) <= 1.0


def test_certain_when_fewer_wrong_than_k():
    assert pass_at_k(5, 3, 3) == 1.0


@pytest.mark.parametrize("n,c,k", [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_rejects_impossible_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_mean_reports_only_ks_every_problem_reaches():
    metrics, skipped = mean_pass_at_k([(5, 1), (3, 3), (5, 0)], [1, 3, 5])
    assert set(metrics) == {"pass@1", "pass@3"}
    assert skipped == [5]
    assert metrics["pass@1"] == pytest.approx((0.2 + 1.0 + 0.0) / 3)
    assert metrics["pass@3"] == pytest.approx((pass_at_k(5, 1, 3) + 1.0 + 0.0) / 3)
