"""XLCoST text-to-code data (jsonl rows ``{"text", "code"}``) and its detokenizer.

XLCoST stores code as space-separated tokens in the TransCoder style: line breaks are ``NEW_LINE``,
Python blocks open with ``INDENT`` and close with ``DEDENT``, and a string literal is split into
sub-tokens, real spaces inside it written ``▁`` (U+2581), e.g. ``print ( " Hello ▁ World " )``.
:func:`detokenize_xlcost` turns that back into source; for well-formed Python the result parses
and has the same AST as the original program.

Known lossy parts: the original layout (blank lines, comments, line continuations, exact
spacing) is gone and is regenerated with PEP 8-like spacing; inside a string literal the
separator spaces are dropped, so a string whose spaces were *not* written as ``▁`` comes back
without them, and a literal ``▁`` in the original string comes back as a space. Non-Python
languages get the same string and line handling and a simple spacing rule; that output is
readable but not guaranteed to compile (e.g. ``#include`` lines keep inner spaces).
"""

from __future__ import annotations

import ast
import keyword
import re
from pathlib import Path

from nl2code.data.records import LoadResult, Record
from nl2code.data.sources._io import SourceError, get_field, iter_jsonl, require_file

NEW_LINE, INDENT, DEDENT = "NEW_LINE", "INDENT", "DEDENT"
SPACE_MARK = "\u2581"  # "▁"
STRING_ESCAPES = {"STRNEWLINE": "\n", "TABSYMBOL": "\t"}  # TransCoder's markers inside strings
LANGUAGES = {
    "python": "python", "py": "python", "cpp": "cpp", "c++": "cpp", "java": "java", "c": "c",
    "javascript": "javascript", "js": "javascript", "csharp": "csharp", "c#": "csharp", "php": "php",
}  # fmt: skip
_PY_STRING_START = re.compile(r"^([rRbBuUfF]{0,2})(\"\"\"|'''|\"|')")
_C_STRING_START = re.compile(r"^([LuUR]|u8)?(\"|'|`)")
_PY_KEYWORDS = (set(keyword.kwlist) | {"match", "case"}) - {"None", "True", "False"}
_C_CONTROL = {"if", "for", "while", "switch", "catch", "return", "foreach", "elseif", "using", "lock"}
_OPENING, _CLOSING = {"(", "[", "{"}, {")", "]", "}"}
_UNARY = {"-", "+", "~", "*", "**"}
_PY_PREFIXES = {"f", "r", "b", "u", "rb", "br", "fr", "rf"}


def _string_start(token: str, python: bool) -> tuple[str, str] | None:
    """``(prefix, quote)`` if ``token`` opens a string literal (alone or with its content)."""
    m = (_PY_STRING_START if python else _C_STRING_START).match(token)
    return (m.group(1) or "", m.group(2)) if m else None


def _unmark(text: str) -> str:
    for mark, char in STRING_ESCAPES.items():
        text = text.replace(mark, char)
    return text.replace(SPACE_MARK, " ")


def _merge_strings(tokens: list[str], python: bool) -> list[str]:
    """Join each split string literal ``" a ▁ b "`` back into one token ``"a b"``."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        start = _string_start(tok, python)
        if start is None:
            out.append(tok)
            i += 1
            continue
        prefix, quote = start
        if len(tok) > len(prefix) + len(quote):  # the whole literal is one token
            out.append(_unmark(tok))
            i += 1
            continue
        # Opening quote alone: gather content up to the matching closing quote token.
        j = i + 1
        while j < len(tokens) and tokens[j] != quote and tokens[j] != NEW_LINE:
            j += 1
        if j < len(tokens) and tokens[j] == quote:
            out.append(prefix + quote + _unmark("".join(tokens[i + 1 : j])) + quote)
            i = j + 1
        else:  # unterminated: keep the tokens as they are
            out.append(tok)
            i += 1
    if python:  # a prefix written as its own token: f " x " -> f"x"
        merged: list[str] = []
        for tok in out:
            start = _string_start(tok, True)
            if merged and merged[-1].lower() in _PY_PREFIXES and start and start[0] == "":
                merged[-1] += tok
            else:
                merged.append(tok)
        out = merged
    return out


def _is_word(tok: str) -> bool:
    return tok[0].isalnum() or tok[0] == "_"


def _is_string(tok: str, python: bool) -> bool:
    start = _string_start(tok, python)
    return start is not None and len(tok) >= len(start[0]) + 2 * len(start[1])


def _python_space(prev2: str | None, prev: str, cur: str, stack: list[str]) -> bool:
    """Whether a space goes between ``prev`` and ``cur`` (PEP 8-like; never merges two tokens)."""
    if prev in _OPENING or cur in _CLOSING or cur in {",", ";", ":"}:
        return False
    if prev == ":" and stack and stack[-1] == "[":  # slice
        return False
    if prev == ".":
        return cur in _PY_KEYWORDS  # from . import x
    if cur == ".":
        if prev[0].isdigit() or prev in _PY_KEYWORDS:  # "1 .real" needs its space; "from . import"
            return True
        return not (_is_word(prev) or prev in _CLOSING or _is_string(prev, True))
    if cur in {"(", "["} and (
        (_is_word(prev) and prev not in _PY_KEYWORDS) or prev in _CLOSING or _is_string(prev, True)
    ):
        return False
    if prev in _UNARY and (
        prev2 is None
        or prev2 in _PY_KEYWORDS
        or not (_is_word(prev2) or prev2 in _CLOSING or _is_string(prev2, True))
    ):
        return False
    if "=" in (prev, cur) and stack and stack[-1] == "(":  # keyword argument / default
        return False
    return not (prev == "@" and prev2 is None)  # decorator


def _generic_space(prev: str, cur: str) -> bool:
    if prev in {"(", "["} or cur in {")", "]", ",", ";"}:
        return False
    if prev == "." and _is_word(cur):
        return False
    if cur == "." and (_is_word(prev) or prev in _CLOSING) and not prev[0].isdigit():
        return False
    return not (cur in {"(", "["} and _is_word(prev) and prev not in _C_CONTROL)


def _join_line(tokens: list[str], python: bool) -> str:
    parts = [tokens[0]]
    stack: list[str] = [tokens[0]] if tokens[0] in _OPENING else []
    for k in range(1, len(tokens)):
        prev, cur = tokens[k - 1], tokens[k]
        prev2 = tokens[k - 2] if k >= 2 else None
        space = _python_space(prev2, prev, cur, stack) if python else _generic_space(prev, cur)
        parts.append((" " if space else "") + cur)
        if cur in _OPENING:
            stack.append(cur)
        elif cur in _CLOSING and stack:
            stack.pop()
    return "".join(parts)


def detokenize_xlcost(code: str, language: str = "python", indent: str = "    ") -> str:
    """Turn XLCoST/TransCoder-tokenized code back into source text.

    Args:
        code: space-separated tokens with ``NEW_LINE``/``INDENT``/``DEDENT`` markers.
        language: ``python`` (default) or one of cpp, java, javascript, csharp, php, c.
        indent: one indentation level.

    Returns:
        The source, one statement a line, ending with a newline (``""`` for empty input).
        ``INDENT``/``DEDENT`` also end the current line; a ``DEDENT`` below level 0 is ignored.
    """
    lang = LANGUAGES.get(language.lower())
    if lang is None:
        known = ", ".join(sorted(set(LANGUAGES.values())))
        raise SourceError(f"unknown XLCoST language {language!r}; known: {known}")
    python = lang == "python"
    tokens = _merge_strings(code.split(), python)
    lines: list[str] = []
    level, current = 0, []
    for tok in tokens + [NEW_LINE]:
        if tok in (NEW_LINE, INDENT, DEDENT):
            if current:
                lines.append(indent * level + _join_line(current, python))
                current = []
            if tok == INDENT:
                level += 1
            elif tok == DEDENT:
                level = max(level - 1, 0)
        else:
            current.append(tok)
    return "".join(line + "\n" for line in lines)


def _split_of(path: Path) -> str:
    name = path.name.lower()
    for key, split in (("train", "train"), ("valid", "validation"), ("val", "validation"),
                       ("dev", "validation"), ("test", "test")):  # fmt: skip
        if key in name:
            return split
    return "all"


def load_xlcost(path: Path, *, language: str = "python", detokenize: bool = True) -> LoadResult:
    """XLCoST text-to-code jsonl (text, tokenized code): one file, or a folder of *.jsonl files.

    Args:
        path: one ``.jsonl`` file (split from its name: train / valid|val|dev / test, else
            ``all``) or a folder whose ``*.jsonl`` files are all read.
        language: the code's language (default python); it is also the records' ``language``.
        detokenize: turn the code back into source (default); the raw tokens stay in
            ``extras["tokens"]``. For Python, rows that then fail ``ast.parse`` are counted in notes.
    """
    lang = LANGUAGES.get(language.lower())
    if lang is None:
        raise SourceError(f"unknown XLCoST language {language!r}")
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [require_file(path)]
    if not files:
        raise SourceError(f"no *.jsonl files in {path}")
    result = LoadResult(records=[])
    for f in files:
        split, bad = _split_of(f), 0
        for i, (line, row) in enumerate(iter_jsonl(f)):
            text = get_field(row, "text", str, f, line)
            tokens = get_field(row, "code", str, f, line)
            code = detokenize_xlcost(tokens, lang) if detokenize else tokens
            if detokenize and lang == "python":
                try:
                    ast.parse(code)
                except SyntaxError:
                    bad += 1
            extras = {"tokens": tokens, "file": f.name, "line": line}
            result.records.append(Record(f"xlcost-{lang}/{f.stem}/{i}", split, text, code, lang, extras))
        if bad:
            result.notes.append(f"{f.name}: {bad} rows do not parse as Python after detokenization")
    return result
