"""Column linking for CF rules: bind a rule's implicit column to the table column the request names.

The benchmark's train rules (and pre-training snippets) never name a column: they apply to the
table's ``Value`` column. 114 of its 178 test rules do (``GreaterThan(c[1], 900000)`` on a
``Region, Sales`` table), and a model that sees only the request cannot know the column's index.
This is schema linking as in text-to-SQL: the request's words are matched against the header, and
an implicit-column rule is rewritten with an explicit ``c[i]`` subject.

The column is chosen among those whose cells suit the rule (numbers for comparisons with a number,
ranks, averages and scales; text for text rules; any column otherwise), by the count of header
words the request spells out or abbreviates. With no shared word the interpreter's default column is
kept when it suits the rule, else the last suitable one. Rules that already name a column, or that
do not parse, are returned unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from nl2code.eval.cf.interpreter import Table
from nl2code.eval.cf.parser import HEAD_KINDS, Call, CellRef, CFParseError, Col, Node, Num, Text, parse_rule

__all__ = ["bind_column", "choose_column", "link_columns", "to_source"]

_WORD = re.compile(r"[a-z0-9]+")
_NUMERIC_HEADS = {"AboveAverage", "BelowAverage", "ColorScale", "DataBar", "IconSet"}


def to_source(node: Node) -> str:
    """The rule in the test dialect: explicit columns, quoted text, ``, `` between arguments."""
    if isinstance(node, Col):
        return f"c[{node.index}]"
    if isinstance(node, Num):
        value = int(node.value) if node.value.is_integer() else node.value
        return f"{value}{'%' if node.percent else ''}"
    if isinstance(node, Text):
        quote = '"' if "'" in node.value else "'"
        return f"{quote}{node.value}{quote}"
    if isinstance(node, CellRef):
        return node.ref
    return f"{node.head}({', '.join(to_source(a) for a in node.args)})"


def _implicit(call: Call) -> bool:
    """True when ``call`` (not a logical one) applies to the default column."""
    kind, args = HEAD_KINDS[call.head], call.args
    if kind == "compare":
        return len(args) == 1
    if kind == "between":
        return len(args) == 2
    if kind == "text":
        return len(args) == 1
    return not (args and isinstance(args[0], Col | Call))


def _leaves(call: Call) -> list[Call]:
    if call.head in ("AND", "OR", "NOT"):
        return [leaf for a in call.args if isinstance(a, Call) for leaf in _leaves(a)]
    return [call]


def bind_column(call: Call, index: int) -> Call:
    """``call`` with column ``index`` as the subject of every condition that has none."""
    if call.head in ("AND", "OR", "NOT"):
        return Call(call.head, tuple(bind_column(a, index) if isinstance(a, Call) else a for a in call.args))
    if not _implicit(call):
        return call
    return Call(call.head, (Col(index), *call.args))


def _wants(call: Call) -> str:
    """'number', 'text' or 'any': the cells the rule's conditions can be about."""
    kinds = set()
    for leaf in _leaves(call):
        kind = HEAD_KINDS[leaf.head]
        with_number = kind == "compare" and any(isinstance(a, Num) for a in leaf.args)
        if kind == "text":
            kinds.add("text")
        elif kind in ("rank", "between") or leaf.head in _NUMERIC_HEADS or with_number:
            kinds.add("number")
    return kinds.pop() if len(kinds) == 1 else "any"


def _stems(text: str) -> set[str]:
    out = set()
    for w in _WORD.findall(text.lower()):
        if len(w) < 3 or w.isdigit():
            continue
        out.add(w[:-1] if w.endswith("s") and len(w) > 4 else w)
    return out


def _abbreviates(short: str, word: str) -> bool:
    """``short`` is ``word`` or an abbreviation of it: a prefix of >= 3 letters (``Apr``), or three
    of its letters in order from the first (``Qty`` for quantity)."""
    if short == word:
        return True
    if len(short) < 3 or len(short) > len(word) or short[0] != word[0]:
        return False
    rest = iter(word[1:])
    return word.startswith(short) or len(short) == 3 and all(ch in rest for ch in short[1:])


def _shared(header: set[str], words: set[str]) -> int:
    """Header words that a request word spells out or abbreviates."""
    return sum(any(_abbreviates(h, w) or _abbreviates(w, h) for w in words) for h in header)


def choose_column(call: Call, nl: str, data: Sequence[Sequence[object]]) -> int:
    """The index of the column the request most likely means for ``call`` (see the module docstring)."""
    table = Table(data)
    want = _wants(call)
    suits = []
    for i in range(len(table.header)):
        cells = [c for c in table.column(i) if c.kind != "blank"]
        numbers = sum(c.kind == "number" for c in cells)
        if not cells or want == "any" or (numbers * 2 >= len(cells)) == (want == "number"):
            suits.append(i)
    suits = suits or list(range(len(table.header)))
    words = _stems(nl)
    scores = {i: _shared(_stems(table.header[i]), words) for i in suits}
    best = max(scores.values())
    if best > 0:
        return min(i for i in suits if scores[i] == best)
    default = table.default_column()
    return default if default in suits else suits[-1]


def link_columns(code: str, nl: str, data: Sequence[Sequence[object]]) -> str:
    """``code`` with its implicit column bound to the one ``nl`` names in ``data`` (else unchanged)."""
    try:
        rule = parse_rule(code.strip())
    except CFParseError:
        return code
    if not data or not data[0] or not any(_implicit(leaf) for leaf in _leaves(rule)):
        return code
    return to_source(bind_column(rule, choose_column(rule, nl, data)))
