"""Code-specific CPD: per-language identifier/keyword spans and token-level masking."""

from __future__ import annotations

import numpy as np
import pytest

from nl2code.data.cpd import (
    bash_spans,
    cf_spans,
    cpd_example,
    cpd_group_ids,
    cpd_mask,
    group_ids,
    groups_from_ids,
    keyword_spans,
    keyword_token_groups,
    python_spans,
    token_char_ends,
)
from nl2code.data.tokenizer import CodeTokenizer


def words(code: str, spans) -> list[tuple[str, str]]:
    return [(code[s.start : s.end], s.kind) for s in spans]


def test_python_spans_identifiers_and_keywords():
    code = "def f(x):\n    return os.path.join(x, 'if y') if x else None\n"
    got = words(code, python_spans(code))
    assert ("def", "keyword") in got and ("return", "keyword") in got and ("None", "keyword") in got
    names = [w for w, _ in got]
    assert names == ["def", "f", "x", "return", "os", "path", "join", "x", "if", "x", "else", "None"]
    assert "y" not in names  # inside a string literal


def test_python_spans_survive_fragments():
    assert [w for w, _ in words("x = foo('a', [1,", python_spans("x = foo('a', [1,"))] == ["x", "foo"]
    # A mid-stream tokenize error (bad dedent) falls back to a regex scan of the rest.
    code = "if x:\n    a\n  b = c"
    assert [w for w, _ in words(code, python_spans(code))] == ["if", "x", "a", "b", "c"]


def test_bash_spans():
    code = 'find . -name "*.txt" | xargs grep -l foo; for f in $(ls); do echo $f; done'
    got = words(code, bash_spans(code))
    assert got == [
        ("find", "keyword"), ("xargs", "keyword"), ("grep", "keyword"), ("for", "keyword"),
        ("f", "identifier"), ("in", "keyword"), ("ls", "keyword"), ("do", "keyword"),
        ("echo", "keyword"), ("f", "identifier"), ("done", "keyword"),
    ]  # fmt: skip
    # Arguments, options, strings and file names are not masked; offsets are characters, not bytes.
    code = 'echo "héllo" $HOME | wc -c'
    assert words(code, bash_spans(code)) == [("echo", "keyword"), ("HOME", "identifier"), ("wc", "keyword")]


def test_cf_spans_follow_the_call_grammar():
    code = "AND(GreaterThanEqual(25),LessThan(50))"
    assert [w for w, _ in words(code, cf_spans(code))] == ["AND", "GreaterThanEqual", "LessThan"]
    assert [w for w, _ in words("TextEquals(In Progress)", cf_spans("TextEquals(In Progress)"))] == ["TextEquals"]
    assert [w for w, _ in words("NOT(TextContains(適))", cf_spans("NOT(TextContains(適))"))] == ["NOT", "TextContains"]
    assert [w for w, _ in words("Blanks()", cf_spans("Blanks()"))] == ["Blanks"]
    assert [w for w, _ in words("AND(Greater", cf_spans("AND(Greater"))] == ["AND"]  # truncated rule


def test_unknown_language():
    with pytest.raises(ValueError, match="unknown language"):
        keyword_spans("x", "cobol")


@pytest.fixture(scope="module")
def tokenizer() -> CodeTokenizer:
    texts = [
        "find . -name '*.py' | xargs grep -n import",
        "for f in *.txt; do echo $f; done",
        "import os\nprint(os.path.join('a', 'b'))",
        "AND(GreaterThan(5),LessThan(10))",
        "echo héllo wörld | wc -c",
    ] * 20
    return CodeTokenizer.train(texts, vocab_size=400, min_frequency=2)


def test_token_char_ends_handle_multibyte(tokenizer):
    text = "echo héllo wörld 日本 | wc -c"
    ids = tokenizer.encode(text)
    full, ends = token_char_ends(tokenizer, ids)
    assert full == text and ends[-1] == len(text)
    assert ends == sorted(ends) and all(0 <= e <= len(text) for e in ends)


@pytest.mark.parametrize(
    ("code", "language", "expected"),
    [
        ("for f in *.txt; do echo $f; done", "bash", {"for", "f", "in", "do", "echo", "done"}),
        ("print(os.path.join('a', 'b'))", "python", {"print", "os", "path", "join"}),
        ("AND(GreaterThan(5),LessThan(10))", "cf", {"AND", "GreaterThan", "LessThan"}),
    ],
)
def test_token_groups_cover_exactly_the_keywords(tokenizer, code, language, expected):
    ids = tokenizer.encode(code)
    groups = keyword_token_groups(tokenizer, ids, language)
    assert groups == sorted(groups) and all(i < j for i, j in groups)
    assert all(a[1] <= b[0] for a, b in zip(groups, groups[1:]))  # disjoint
    covered = [tokenizer.decode(ids[i:j]).strip() for i, j in groups]
    assert set(covered) == expected


def test_cpd_mask_collapses_and_keeps_target():
    ids = list(range(10, 20))
    groups = [(1, 3), (5, 6), (7, 10)]
    rng = np.random.default_rng(0)
    ex = cpd_mask(ids, groups, mask_id=2, rng=rng, mask_rate=1.0)
    assert ex.target_ids == ids
    assert ex.input_ids == [10, 2, 13, 14, 2, 16, 2]
    assert ex.masked == [False, True, True, False, False, True, False, True, True, True]
    per_token = cpd_mask(ids, groups, mask_id=2, rng=rng, mask_rate=1.0, collapse=False)
    assert per_token.input_ids == [10, 2, 2, 13, 14, 2, 16, 2, 2, 2]
    # Rate 0 masks nothing; a tiny rate still masks one occurrence.
    assert cpd_mask(ids, groups, 2, rng, mask_rate=0.0).input_ids == ids
    assert sum(cpd_mask(ids, groups, 2, rng, mask_rate=1e-9).masked) > 0
    with pytest.raises(ValueError):
        cpd_mask(ids, groups, 2, rng, mask_rate=1.5)


def test_cpd_mask_rate_and_determinism():
    ids = list(range(400))
    groups = [(i, i + 2) for i in range(0, 400, 4)]  # 100 groups
    a = cpd_mask(ids, groups, 2, np.random.default_rng(7), mask_rate=0.3)
    b = cpd_mask(ids, groups, 2, np.random.default_rng(7), mask_rate=0.3)
    assert a == b
    fraction = sum(a.masked) / 200
    assert 0.18 < fraction < 0.42


def test_cpd_example_masks_only_keywords(tokenizer):
    code = "for f in *.txt; do echo $f; done"
    ids = tokenizer.encode(code)
    ex = cpd_example(tokenizer, ids, "bash", tokenizer.mask_id, np.random.default_rng(1), mask_rate=1.0)
    assert ex.target_ids == ids
    kept = tokenizer.decode([t for t in ex.input_ids if t != tokenizer.mask_id])
    assert "*.txt" in kept and "echo" not in kept and "done" not in kept


def test_group_ids_round_trip():
    groups = [(1, 3), (3, 4), (6, 9)]
    gid = group_ids(groups, 10)
    assert gid == [0, 1, 1, 2, 0, 0, 3, 3, 3, 0]
    assert groups_from_ids(gid) == groups


def test_cpd_group_ids_skip_special_tokens(tokenizer):
    ids = tokenizer.encode("for f in *.txt; do echo $f; done") + [tokenizer.eos_id]
    gid = cpd_group_ids(tokenizer, ids, "bash", tokenizer.special_ids)
    assert len(gid) == len(ids) and gid[-1] == 0
    assert groups_from_ids(gid) == keyword_token_groups(tokenizer, ids[:-1], "bash")
