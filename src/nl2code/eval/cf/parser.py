"""Parser for the conditional-formatting (CF) rule language of CodeFusion's CF benchmark.

The language, as seen in ``CFRuleBenchmarks.json`` and ``ConditionalFormattingSnippets.txt``, is a
single call ``Head(args)``. Two dialects occur and are both accepted:

* train / pre-training: the rule applies to an implicit column, text arguments are unquoted and may
  hold spaces, commas and parentheses: ``TextContains(Non-pooled, en)``, ``TextEquals(Y(SH))``,
  ``top(10%)``, ``AND(GreaterThanEqual(25),LessThan(50))``;
* test: an explicit 0-based column first, quoted text: ``TextContains(c[1], 'L compatible')``,
  ``Between(c[2], 3000, 4000)``, ``GreaterThan(c[2], c[1])``, ``GreaterThan(LEN(c[0]), 6)``.

Head names are case-insensitive and a few spellings are aliases (``Duplicates`` = ``Duplicate``,
``StartsWith`` = ``TextStartsWith``, ``GreaterThanEquals`` = ``GreaterThanEqual``, ``top`` = ``Top``).
Anything else (Excel formulas such as ``$A2=$A3``, ``SUMPRODUCT(...)``, ExcelScript fragments,
unknown heads, wrong arity) raises :class:`CFParseError`.

Argument rules:
* text heads (``TextEquals``/``TextContains``/``TextStartsWith``/``TextEndsWith``/``TextNotContains``)
  take an optional subject then one text operand: a quoted string (``'..'`` or ``".."``), a column,
  or raw text running to the parenthesis that closes the call (inner parentheses are balanced; if
  they never balance the raw text runs to the last ``)`` of the rule). Raw text is kept verbatim.
* other heads take comma-separated operands: column ``c[i]``, ``LEN(c[i])``, a number (optionally with
  ``%``), a quoted string, a cell reference such as ``$E$13`` (kept, but not executable), or raw text
  up to the next ``,`` or ``)`` (e.g. ``13 Days``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "Call",
    "CellRef",
    "CFParseError",
    "Col",
    "HEAD_KINDS",
    "Node",
    "Num",
    "Text",
    "canonical",
    "parse_rule",
]


class CFParseError(ValueError):
    """The rule is not in the CF rule language (message names the position)."""


@dataclass(frozen=True)
class Col:
    """Explicit column ``c[index]`` (0-based over the table's columns)."""

    index: int


@dataclass(frozen=True)
class Num:
    """A numeric literal; ``percent`` is True for ``10%``."""

    value: float
    percent: bool = False


@dataclass(frozen=True)
class Text:
    """A text literal; ``quoted`` records whether the source quoted it."""

    value: str
    quoted: bool = False


@dataclass(frozen=True)
class CellRef:
    """A reference to a sheet cell such as ``$E$13``: the table does not hold it."""

    ref: str


@dataclass(frozen=True)
class Call:
    """``head(args...)`` with the canonical head name."""

    head: str
    args: tuple[Node, ...]


Node = Col | Num | Text | CellRef | Call

# canonical head -> kind; the kind decides how arguments are parsed and checked.
HEAD_KINDS: dict[str, str] = {
    "AND": "logical", "OR": "logical", "NOT": "not",
    "GreaterThan": "compare", "GreaterThanEqual": "compare", "LessThan": "compare",
    "LessThanEqual": "compare", "Equals": "compare", "NotEquals": "compare",
    "Between": "between", "NotBetween": "between",
    "TextEquals": "text", "TextContains": "text", "TextNotContains": "text",
    "TextStartsWith": "text", "TextEndsWith": "text",
    "Top": "rank", "Bottom": "rank", "TopPercent": "rank", "BottomPercent": "rank",
    "AboveAverage": "column", "BelowAverage": "column", "Duplicate": "column", "Unique": "column",
    "Blanks": "column", "NoBlanks": "column", "Errors": "column", "NoErrors": "column",
    "ColorScale": "column", "DataBar": "column", "IconSet": "column",
    "Yesterday": "column", "Today": "column", "Tomorrow": "column", "Last7Days": "column",
    "LastWeek": "column", "ThisWeek": "column", "NextWeek": "column",
    "LastMonth": "column", "ThisMonth": "column", "NextMonth": "column",
    "LEN": "value",
}  # fmt: skip

_ALIASES = {
    "greaterthanequals": "GreaterThanEqual", "greaterthanorequal": "GreaterThanEqual",
    "lessthanequals": "LessThanEqual", "lessthanorequal": "LessThanEqual",
    "equal": "Equals", "notequal": "NotEquals",
    "startswith": "TextStartsWith", "beginswith": "TextStartsWith", "endswith": "TextEndsWith",
    "duplicates": "Duplicate", "unique": "Unique", "uniques": "Unique",
    "blank": "Blanks", "noblank": "NoBlanks", "error": "Errors", "noerror": "NoErrors",
}  # fmt: skip
_CANON = {name.lower(): name for name in HEAD_KINDS} | _ALIASES

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COL = re.compile(r"[cC]\[\s*(\d+)\s*\]")
_NUM = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*(%?)")
_CELL = re.compile(r"\$?[A-Za-z]{1,3}\$?\d+")
_WS = re.compile(r"\s*")


def canonical(head: str) -> str | None:
    """Canonical spelling of a head name, or None when it is not in the language."""
    return _CANON.get(head.lower())


class _Parser:
    def __init__(self, src: str):
        self.src = src
        self.pos = 0

    def fail(self, problem: str) -> CFParseError:
        return CFParseError(f"{problem} at column {self.pos + 1} of {self.src!r}")

    def ws(self) -> None:
        self.pos = _WS.match(self.src, self.pos).end()

    def peek(self) -> str:
        return self.src[self.pos] if self.pos < len(self.src) else ""

    def expect(self, char: str) -> None:
        self.ws()
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def at_arg_end(self, pos: int) -> bool:
        """True when only whitespace separates ``pos`` from a ``,`` or ``)``."""
        pos = _WS.match(self.src, pos).end()
        return pos < len(self.src) and self.src[pos] in ",)"

    def call(self, rule: bool = True) -> Call:
        self.ws()
        m = _IDENT.match(self.src, self.pos)
        if not m:
            raise self.fail("expected a rule head")
        head = canonical(m.group())
        if head is None:
            raise self.fail(f"unknown head {m.group()!r}")
        if rule and HEAD_KINDS[head] == "value":
            raise self.fail(f"{head} is a value, not a rule")
        self.pos = m.end()
        self.expect("(")
        kind = HEAD_KINDS[head]
        if kind in ("logical", "not"):
            args = self.rule_list()
        elif kind == "text":
            args = self.text_args()
        else:
            args = self.operand_list()
        self.expect(")")
        node = Call(head, tuple(args))
        _check_arity(node, self)
        return node

    def rule_list(self) -> list[Node]:
        args = [self.call()]
        self.ws()
        while self.peek() == ",":
            self.pos += 1
            args.append(self.call())
            self.ws()
        return args

    def operand_list(self) -> list[Node]:
        self.ws()
        if self.peek() == ")":
            return []
        args = [self.operand()]
        self.ws()
        while self.peek() == ",":
            self.pos += 1
            args.append(self.operand())
            self.ws()
        return args

    def subject(self) -> Node | None:
        """A column or ``LEN(column)`` followed by a comma, else None (position unchanged)."""
        start = self.pos
        self.ws()
        node: Node | None = None
        m = _COL.match(self.src, self.pos)
        if m:
            node, self.pos = Col(int(m.group(1))), m.end()
        elif self.src[self.pos : self.pos + 3].upper() == "LEN":
            try:
                node = self.call(rule=False)
            except CFParseError:
                node = None
        self.ws()
        if node is not None and self.peek() == ",":
            self.pos += 1
            return node
        self.pos = start
        return None

    def operand(self) -> Node:
        self.ws()
        rest = self.src[self.pos :]
        m = _COL.match(self.src, self.pos)
        if m:
            self.pos = m.end()
            return Col(int(m.group(1)))
        m = _IDENT.match(self.src, self.pos)
        if m and canonical(m.group()) == "LEN" and self.src[m.end() : m.end() + 1] == "(":
            return self.call(rule=False)
        if rest[:1] in ("'", '"'):
            quoted = self.quoted()
            if quoted is not None:
                return quoted
        m = _NUM.match(self.src, self.pos)
        if m and self.at_arg_end(m.end()):
            self.pos = m.end()
            number = m.group().rstrip("%").strip()
            return Num(float(number), percent=bool(m.group(1)))
        m = _CELL.match(self.src, self.pos)
        if m and "$" in m.group() and self.at_arg_end(m.end()):
            self.pos = m.end()
            return CellRef(m.group())
        # raw text up to the next top-level ',' or ')'
        depth, i = 0, self.pos
        while i < len(self.src):
            ch = self.src[i]
            if ch == "(":
                depth += 1
            elif ch == ")" and depth == 0 or ch == "," and depth == 0:
                break
            elif ch == ")":
                depth -= 1
            i += 1
        value = self.src[self.pos : i].strip()
        if not value:
            raise self.fail("empty argument")
        self.pos = i
        return Text(value)

    def quoted(self) -> Text | None:
        """A quoted string if it is the whole argument ('' inside doubles the quote), else None."""
        q, i, out = self.src[self.pos], self.pos + 1, []
        while i < len(self.src):
            if self.src[i] == q:
                if self.src[i + 1 : i + 2] == q:
                    out.append(q)
                    i += 2
                    continue
                if self.at_arg_end(i + 1):
                    self.pos = i + 1
                    return Text("".join(out), quoted=True)
                return None
            out.append(self.src[i])
            i += 1
        return None

    def text_args(self) -> list[Node]:
        args: list[Node] = []
        subject = self.subject()
        if subject is not None:
            args.append(subject)
            self.ws()  # after an explicit column the operand starts at its first non-space
        start = _WS.match(self.src, self.pos).end()
        m = _COL.match(self.src, start)
        if m and self.at_arg_end(m.end()):
            self.pos = m.end()
            args.append(Col(int(m.group(1))))
            return args
        if self.src[start : start + 1] in ("'", '"'):
            saved, self.pos = self.pos, start
            quoted = self.quoted()
            if quoted is not None:
                args.append(quoted)
                return args
            self.pos = saved
        raw = self.raw_to_close()
        cell = _CELL.fullmatch(raw.strip())
        args.append(CellRef(raw.strip()) if cell and "$" in raw else Text(raw))
        return args

    def raw_to_close(self) -> str:
        """Verbatim text up to the ``)`` that closes the current call."""
        depth = 0
        for i in range(self.pos, len(self.src)):
            ch = self.src[i]
            if ch == "(":
                depth += 1
            elif ch == ")":
                if depth == 0:
                    value, self.pos = self.src[self.pos : i], i
                    return value
                depth -= 1
        # unbalanced '(' inside the text, e.g. "TextContains(Yes-adhoc(if needed)"
        last = self.src.rfind(")")
        if last < self.pos:
            raise self.fail("missing ')'")
        value, self.pos = self.src[self.pos : last], last
        return value


def _check_arity(node: Call, parser: _Parser) -> None:
    kind, args = HEAD_KINDS[node.head], node.args

    def bad(why: str) -> CFParseError:
        return parser.fail(f"{node.head}: {why}")

    def is_subject(a: Node) -> bool:
        return isinstance(a, Col) or isinstance(a, Call) and a.head == "LEN"

    if kind == "not" and len(args) != 1:
        raise bad("takes one rule")
    if kind == "compare" or kind == "between":
        want = 1 if kind == "compare" else 2
        operands = args[1:] if len(args) == want + 1 and is_subject(args[0]) else args
        if len(operands) != want:
            raise bad(f"takes {want} operand(s) and an optional column")
    elif kind == "text":
        if not 1 <= len(args) <= 2:
            raise bad("takes a text and an optional column")
    elif kind == "rank":
        rest = args[1:] if args and isinstance(args[0], Col) else args
        if len(rest) > 1 or rest and not isinstance(rest[0], Num):
            raise bad("takes an optional column and an optional count")
        if rest and (rest[0].value < 0 or rest[0].value != int(rest[0].value) and not rest[0].percent):
            raise bad("count must be a non-negative integer")
    elif kind == "column":
        if len(args) > 1 or args and not isinstance(args[0], Col):
            raise bad("takes at most one column")
    elif kind == "value" and (len(args) > 1 or args and not isinstance(args[0], Col)):
        raise bad("takes at most one column")


def parse_rule(src: str) -> Call:
    """Parse one CF rule; raises :class:`CFParseError` when ``src`` is not in the language."""
    parser = _Parser(src)
    node = parser.call()
    parser.ws()
    if parser.pos != len(src):
        raise parser.fail("unexpected text after the rule")
    return node
