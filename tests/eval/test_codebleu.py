"""CodeBLEU through the pinned codebleu package: its README example and the dataflow floor."""

from __future__ import annotations

import pytest

from nl2code.eval.metrics.codebleu import codebleu

README_REFERENCE = "def sum ( first , second ) :\n return second + first"
README_PREDICTION = "def add ( a , b ) :\n return a + b"


def test_readme_example():
    r = codebleu([README_REFERENCE], [README_PREDICTION], lang="python")
    # documented in the codebleu README: codebleu 0.5537, ngram 0.1041, weighted 0.1109, syntax 1, dataflow 1
    assert r.codebleu == pytest.approx(0.5537842627792564, abs=1e-9)
    assert r.ngram_match == pytest.approx(0.1041, abs=1e-4)
    assert r.weighted_ngram_match == pytest.approx(0.1109, abs=1e-4)
    assert r.syntax_match == 1.0 and r.dataflow_match == 1.0
    assert r.dataflow_floor == 0
    m = r.as_metrics()
    assert m["codebleu"] == r.codebleu and m["codebleu_dataflow_floor"] == 0.0


def test_dataflow_floor_counts_pairs_whose_zero_became_one():
    refs = ["print(1)", "a = b + c"]
    preds = ["print(2)", "d = 1"]
    r = codebleu(refs, preds)
    assert [s["dataflow_match_score"] for s in r.per_sample] == [0, pytest.approx(1 / 3)]
    assert r.dataflow_floor == 1
    # the floored pair still gets theta * 1 = 0.25 from the data-flow term
    first = r.per_sample[0]
    parts = first["ngram_match_score"] + first["weighted_ngram_match_score"] + first["syntax_match_score"]
    assert first["codebleu"] == pytest.approx(0.25 * parts + 0.25)


def test_identical_short_snippets_do_not_reach_one():
    # the package's NLTK-style n-gram precision gives sentences shorter than n a denominator of 1
    r = codebleu(["x = f(a)"], ["x = f(a)"])
    assert r.ngram_match < 1.0 and r.syntax_match == 1.0


def test_length_mismatch_and_empty():
    with pytest.raises(ValueError):
        codebleu(["a"], [])
    assert codebleu([], []).codebleu == 0.0
