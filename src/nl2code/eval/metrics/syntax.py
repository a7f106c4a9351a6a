"""Syntactic validity of generated code per language (Python, Bash, CF rules).

* Python: ``ast.parse`` succeeds (statements or a bare expression; purely syntactic, so a snippet
  with a top-level ``return`` counts as valid, as CoNaLa fragments need).
* Bash: tree-sitter-bash parses it without ERROR or MISSING nodes (and it is not blank).
* CF: the project's CF rule parser accepts it (:func:`nl2code.eval.cf.parse_rule`).
"""

from __future__ import annotations

import ast
import warnings

__all__ = ["LANGUAGES", "bash_valid", "cf_valid", "python_valid", "syntax_valid"]

LANGUAGES = ("python", "bash", "cf")


def python_valid(code: str) -> bool:
    if not code.strip():
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences etc. are warnings, not errors
            ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def bash_valid(code: str) -> bool:
    from nl2code.eval.metrics.bash_template import parses

    return parses(code)


def cf_valid(code: str) -> bool:
    from nl2code.eval.cf import CFParseError, parse_rule

    try:
        parse_rule(code)
    except CFParseError:
        return False
    return True


def syntax_valid(code: str, language: str) -> bool:
    """Whether ``code`` is syntactically valid ``language`` (one of ``LANGUAGES``)."""
    check = {"python": python_valid, "bash": bash_valid, "cf": cf_valid}.get(language)
    if check is None:
        raise ValueError(f"no syntax check for {language!r}; known: {', '.join(LANGUAGES)}")
    return check(code)
