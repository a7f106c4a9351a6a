"""The demo's next-word task: rows, metric and baselines on tiny fixtures (exact numbers)."""

from __future__ import annotations

import pytest

from nl2code.demo.nextword import (
    ConstantBaseline,
    RetrievalBaseline,
    completion_scores,
    edit_similarity,
    first_word,
    word_offsets,
    word_rows,
)

TRAIN = [
    {"task_id": "a", "nl": "Add one.", "code": "def inc(x):\n    y = x + 1\n    return y"},
    {"task_id": "b", "nl": "Double it.", "code": "def double(x):\n    return x * 2"},
]


def test_word_rows_are_the_names_after_the_signature():
    assert word_offsets(TRAIN[0]["code"]) == [(16, "y"), (20, "x"), (30, "return"), (37, "y")]
    rows = word_rows(TRAIN)
    assert [(r["task_id"], r["target"]) for r in rows] == [
        ("a@16", "y"), ("a@20", "x"), ("a@30", "return"), ("a@37", "y"), ("b@19", "return"), ("b@26", "x"),
    ]  # fmt: skip
    # the whitespace before the word is the model's to write (the tokenizer joins it to the word)
    assert rows[1]["prefix"] == "def inc(x):\n    y =" and rows[2]["prefix"] == "def inc(x):\n    y = x + 1"
    assert rows[0]["nl"] == "Add one."
    assert [r["target"] for r in word_rows(TRAIN, per_function=2)] == ["y", "return", "return", "x"]
    assert word_offsets("def f(:\n    '''") == []  # does not tokenize: no rows


def test_scores_and_edit_similarity():
    assert edit_similarity(" return ", "return") == 1.0
    assert edit_similarity("self", "sell") == pytest.approx(0.75)
    assert edit_similarity("", "") == 1.0 and edit_similarity("", "abcd") == 0.0
    s = completion_scores(["self", "return", "x"], ["self", "retur", ""])
    assert s == {"rows": 3, "exact_match": pytest.approx(1 / 3), "edit_similarity": pytest.approx((1 + 5 / 6) / 3)}
    assert isinstance(completion_scores(["a"], ["b"])["exact_match"], float)
    with pytest.raises(ValueError):
        completion_scores(["a"], [])


def test_constant_and_retrieval_baselines():
    rows = word_rows(TRAIN)
    const = ConstantBaseline(rows)
    assert const.answer == "y"  # y, x and return twice each: the first seen wins
    held = [
        {"task_id": "h@1", "nl": "Add two.", "prefix": "def add2(x):\n    y = x + 2\n   ", "target": "return"},
        {"task_id": "h@2", "nl": "Double it.", "prefix": "def twice(x):\n   ", "target": "return"},
        {"task_id": "h@3", "nl": "?", "prefix": "+", "target": "pass"},  # no shared word
    ]
    assert const.predict(held) == ["y"] * 3
    retrieved = RetrievalBaseline(rows).predict(held)
    # Words of two or more characters count: h@1 shares "add" with a's rows, nearest the shortest
    # context (a@37: add, one, return; it was followed by y); h@2 shares b's description, b@19 has
    # the fewer words (double, it, def); h@3 shares nothing: the constant answer.
    assert retrieved == ["y", "return", "y"]
    targets = [r["target"] for r in held]
    assert completion_scores(targets, retrieved)["exact_match"] == pytest.approx(1 / 3)
    assert completion_scores(targets, const.predict(held))["exact_match"] == 0.0


def test_the_model_answer_is_the_word_its_continuation_starts_with():
    assert first_word("\n    return y") == "return"
    assert first_word(" self._w, x") == "self"
    assert first_word("(x)") == "" and first_word("") == ""
