"""Syntax validity per language."""

from __future__ import annotations

import pytest

from nl2code.eval.metrics.syntax import syntax_valid


@pytest.mark.parametrize(
    ("code", "language", "ok"),
    [
        ("x = [i * 2 for i in range(3)]", "python", True),
        ("os.path.join(a, b)", "python", True),  # a bare expression
        ("return x", "python", True),  # syntactic check only (CoNaLa fragments)
        ("def f(:\n    pass", "python", False),
        ("x = (1,", "python", False),
        ("", "python", False),
        ("a\x00b", "python", False),
        ("find . -name '*.txt' | xargs rm", "bash", True),
        ("for f in *; do echo $f; done", "bash", True),
        ("ls |", "bash", False),
        ("(ls", "bash", False),
        ('echo "open', "bash", False),
        ("   ", "bash", False),
        ("AND(GreaterThan(c[1], 0), TextEquals(c[3], 'Worldwide'))", "cf", True),
        ("TextContains(Non-pooled, en)", "cf", True),
        ("$A2=$A3", "cf", False),
        ("GreaterThan()", "cf", False),
    ],
)
def test_syntax_valid(code: str, language: str, ok: bool) -> None:
    assert syntax_valid(code, language) is ok


def test_unknown_language():
    with pytest.raises(ValueError, match="no syntax check"):
        syntax_valid("x", "cobol")
