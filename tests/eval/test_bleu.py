"""CoNaLa BLEU / exact match against hand-computed values."""

from __future__ import annotations

import math

import pytest

from nl2code.eval.metrics.bleu import compute_bleu, conala_bleu, conala_exact_match, tokenize_for_bleu_eval


def test_tokenizer_splits_symbols_camel_case_and_quotes():
    assert tokenize_for_bleu_eval("df.groupby(['a']).sum()") == [
        "df", ".", "groupby", "(", "[", "`", "a", "`", "]", ")", ".", "sum", "(", ")",
    ]  # fmt: skip
    assert tokenize_for_bleu_eval('getValue("x")') == ["get", "Value", "(", "`", "x", "`", ")"]
    assert tokenize_for_bleu_eval("a_b  =\n1") == ["a_b", "=", "1"]


def test_one_substitution_in_five_tokens():
    # ref a = b + c, hyp a = b + d: p1..p4 = 4/5, 3/4, 2/3, 1/2; equal lengths -> BP 1
    expected = (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert conala_bleu(["a = b + c"], ["a = b + d"]) == pytest.approx(100 * expected)
    assert expected == pytest.approx(0.668740, abs=1e-6)


def test_brevity_penalty():
    # ref x = foo ( a , b ) (8 tokens), hyp x = foo ( a ) (6): p = 6/6, 4/5, 3/4, 2/3; BP = exp(1 - 8/6)
    expected = (1 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25 * math.exp(1 - 8 / 6)
    assert conala_bleu(["x = foo(a, b)"], ["x = foo(a)"]) == pytest.approx(100 * expected)
    assert 100 * expected == pytest.approx(56.9836, abs=1e-3)


def test_corpus_level_sums_counts_before_dividing():
    refs, hyps = ["a = b + c", "x = foo(a, b)"], ["a = b + d", "x = foo(a)"]
    precisions = [10 / 11, 7 / 9, 5 / 7, 3 / 5]
    expected = math.prod(precisions) ** 0.25 * math.exp(1 - 13 / 11)
    assert conala_bleu(refs, hyps) == pytest.approx(100 * expected)
    mean_of_sentences = (conala_bleu(refs[:1], hyps[:1]) + conala_bleu(refs[1:], hyps[1:])) / 2
    assert conala_bleu(refs, hyps) != pytest.approx(mean_of_sentences)


def test_no_smoothing_short_identical_snippet_scores_zero():
    # 3 tokens have no 4-gram: p4 = 0 and without smoothing the geometric mean is 0
    assert conala_bleu(["x = 1"], ["x = 1"]) == 0.0
    # with add-one smoothing every order is (m+1)/(p+1) = 1 here (what the bigcode variant would give)
    assert compute_bleu([[["x", "=", "1"]]], [["x", "=", "1"]], smooth=True).bleu == pytest.approx(1.0)


def test_empty_predictions_do_not_crash():
    assert conala_bleu(["a = b + c"], [""]) == 0.0
    r = compute_bleu([[["a"]]], [[]])
    assert r.bleu == 0.0 and r.brevity_penalty == 0.0


def test_exact_match_uses_the_tokenizer():
    assert conala_exact_match("x=foo( 'a' )", 'x = foo("a")')
    assert not conala_exact_match("x = foo(a)", "x = foo(b)")
