"""The demo's next-word task: rows, metric and baselines on tiny fixtures (exact numbers)."""

from __future__ import annotations

import pytest

from nl2code.demo.nextword import (
    ConstantBaseline,
    RetrievalBaseline,
    edit_similarity,
    first_line,
    word_rows,
    completion_scores,
)
from nl2code.demo.steps import line_after_newline

TRAIN = [
    {"task_id": "a", "nl": "Add one.", "code": "def inc(x):\n    y = x + 1\n    return y"},
    {"task_id": "b", "nl": "Double it.", "code": "def double(x):\n    y = x * 2\n\n    return y"},
    {
        "task_id": "c",
        "nl": "Open a file.",
        "code": "def load(path):\n    with open(path) as f:\n        return f.read()",
    },
]


def test_word_rows_skip_the_signature_and_blank_lines():
    rows = word_rows(TRAIN)
    assert [r["task_id"] for r in rows] == ["a:1", "a:2", "b:1", "b:3", "c:1", "c:2"]
    assert rows[3]["prefix"] == "def double(x):\n    y = x * 2\n\n" and rows[3]["target"] == "return y"
    assert rows[0]["nl"] == "Add one."
    # per_function spreads the kept lines over the function
    long = {"task_id": "l", "nl": "", "code": "\n".join(["def f():"] + [f"    x{i} = {i}" for i in range(6)])}
    assert [r["task_id"] for r in word_rows([long], per_function=3)] == ["l:1", "l:3", "l:5"]


def test_completion_scores_and_edit_similarity():
    assert edit_similarity("return  y ", "return y") == 1.0
    assert edit_similarity("return x", "return y") == pytest.approx(1 - 1 / 8)
    assert edit_similarity("", "") == 1.0 and edit_similarity("", "abcd") == 0.0
    s = completion_scores(["return y", "pass", "x = 1"], ["return y", "pas", ""])
    assert s["rows"] == 3 and s["exact_match"] == pytest.approx(1 / 3)
    assert isinstance(completion_scores(["a"], ["b"])["exact_match"], float)
    assert s["edit_similarity"] == pytest.approx((1 + 0.75 + 0) / 3)
    with pytest.raises(ValueError):
        completion_scores(["a"], [])


def test_constant_and_retrieval_baselines():
    rows = word_rows(TRAIN)
    const = ConstantBaseline(rows)
    assert const.answer == "return y"  # twice in train; every other line once
    held = [
        {"task_id": "h:1", "nl": "Read a file.", "prefix": "def read(path):\n    with open(path) as f:\n",
         "target": "return f.read()"},
        {"task_id": "h:2", "nl": "Triple.", "prefix": "def triple(z):\n", "target": "w = z * 3"},
        {"task_id": "h:3", "nl": "???", "prefix": "+\n", "target": "pass"},  # no shared word
    ]  # fmt: skip
    assert const.predict(held) == ["return y"] * 3
    retrieved = RetrievalBaseline(rows).predict(held)
    # h:1 -> c's context (open, path, with); h:2 shares only "def" with every row: the first wins;
    # h:3 shares no word: the constant answer.
    assert retrieved == ["return f.read()", "y = x + 1", "return y"]
    targets = [r["target"] for r in held]
    assert completion_scores(targets, retrieved)["exact_match"] == pytest.approx(1 / 3)
    assert completion_scores(targets, const.predict(held))["exact_match"] == 0.0


def test_model_answer_is_the_line_after_the_newline():
    assert line_after_newline("\n    return y\n    x") == "return y"
    assert line_after_newline(" + 1\n\n    pass") == "pass"  # the rest of the given line is ignored
    assert line_after_newline("return y") == ""  # never left the given line
    assert first_line("\n\n  a = 1  \nb") == "a = 1"
