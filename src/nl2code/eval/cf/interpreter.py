"""Interpreter for CF rules: which data rows of a table does a rule format?

A table is CodeFusion's ``Data``: a list of rows, the first row the header. A rule is evaluated on
one column at a time; the result is the set of formatted data rows (0-based, header excluded).

Column: ``c[i]`` when the rule names it, else the *default column*: the one whose header is
``Value`` (the train tables are ``Index, Value[, extra]``), else the last column.

Cell typing (what Excel would hold after typing the value in):
* ``None``, ``""`` or whitespace-only -> blank;
* ``bool`` -> logical ``TRUE``/``FALSE``;
* ``int``/``float`` -> number;
* strings: Excel error literals (``#N/A``, ``#DIV/0!`` ...) -> error; numbers with optional sign,
  ``$``/``€``/``£`` prefix, thousands commas and ``%`` suffix (``5%`` = 0.05) -> number; dates
  ``YYYY-MM-DD``, ``D/M/YYYY`` (else ``M/D/YYYY``) -> number (Excel serial day); anything else -> text.

Semantics follow Excel's conditional-formatting rules:
* comparisons (``GreaterThan`` ... ``Between``) compare like Excel's cell-value rules: blank counts
  as 0 (or ``""`` against text), numbers < text < logicals, text compares case-insensitively;
  errors never match; ``Between`` is inclusive and accepts its bounds in either order;
* text rules (``TextContains``/``TextStartsWith``/``TextEndsWith``/``TextEquals``) match the cell's
  displayed text case-insensitively and untrimmed (``"Intestinal "`` is not ``Intestinal``, as in
  the train labels); blanks never match a non-empty text;
* ``Top``/``Bottom`` n (default 10) or n% (``TopPercent``): numeric cells ranked, ties with the
  cut-off value included; n% selects ``max(1, floor(count * n / 100))`` cells;
* ``AboveAverage``/``BelowAverage``: numeric cells strictly above/below the mean of numeric cells;
* ``Duplicate``/``Unique``: non-blank cells whose value (numbers by value, text case-insensitively)
  occurs more than once / exactly once;
* ``Blanks``/``NoBlanks``, ``Errors``/``NoErrors``: by cell type;
* ``ColorScale``/``DataBar``/``IconSet`` format every numeric cell of the column (they have no
  condition; the set of cells carrying a colour/bar/icon is what is compared, with the head as the
  formatting kind) and cannot be combined with AND/OR/NOT;
* date rules (``LastMonth`` ...): relative to the latest date in the column, a deterministic
  stand-in for the clock; only cells typed as dates take part;
* ``AND``/``OR``/``NOT`` combine row sets.

:class:`Semantics` switches on the conventions of the labeller behind the train ``Labels``
(``LABELS``); they are used only to explain label disagreements (``cf_rules.gold_report``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from nl2code.eval.cf.parser import Call, CellRef, Col, Node, Num, Text

__all__ = ["EXCEL", "LABELS", "Cell", "CFExecError", "Formatting", "Semantics", "Table", "execute", "type_cell"]

ERROR_LITERALS = frozenset(
    ["#N/A", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#NULL!", "#SPILL!", "#CALC!", "#GETTING_DATA"]
)
_NUMBER = re.compile(r"([+-]?)\s*[$€£]?\s*((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?\s*(%?)")
_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_SLASH_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_EXCEL_EPOCH = date(1899, 12, 30)


class CFExecError(ValueError):
    """The rule cannot be executed on this table (bad column, cell reference outside the table)."""


@dataclass(frozen=True)
class Cell:
    """A typed cell. ``kind`` is one of blank, number, text, logical, error."""

    kind: str
    text: str  # the displayed text
    number: float | None = None
    is_date: bool = False


@dataclass(frozen=True)
class Semantics:
    """Conventions that differ between Excel and the labeller behind the benchmark's train ``Labels``.

    ``EXCEL`` (all False) is what the rule names mean and is used for execution match. ``LABELS``
    turns on the conventions reverse-engineered from the train labels (see ``gold_report``), used only
    to explain where executing a gold rule disagrees with its labels.
    """

    text_as_zero: bool = False  # numeric rules read text/blank/logical cells as 0 (else Excel typing)
    duplicate_first: bool = False  # Duplicate() marks the first occurrence of every value
    blanks_inverted: bool = False  # Blanks() marks the non-blank cells
    bottom_le_kth_largest: bool = False  # Bottom(k) marks values <= the k-th largest value


EXCEL = Semantics()
LABELS = Semantics(text_as_zero=True, duplicate_first=True, blanks_inverted=True, bottom_le_kth_largest=True)


def _parse_date(s: str) -> date | None:
    m = _ISO_DATE.fullmatch(s)
    candidates: list[tuple[int, int, int]] = []
    if m:
        candidates.append((int(m.group(1)), int(m.group(2)), int(m.group(3))))
    m = _SLASH_DATE.fullmatch(s)
    if m:
        a, b, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
        candidates += [(y, b, a), (y, a, b)]  # day-first as in the benchmark tables, then US order
    for y, mo, d in candidates:
        try:
            return date(y, mo, d)
        except ValueError:
            continue
    return None


def type_cell(value: object) -> Cell:
    """Type one raw ``Data`` value as Excel would (see the module docstring)."""
    if value is None:
        return Cell("blank", "")
    if isinstance(value, bool):
        return Cell("logical", "TRUE" if value else "FALSE", 1.0 if value else 0.0)
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return Cell("error", "#NUM!")
        return Cell("number", _display(float(value)), float(value))
    s = str(value)
    stripped = s.strip()
    if not stripped:
        return Cell("blank", s)
    if stripped.upper() in ERROR_LITERALS:
        return Cell("error", stripped.upper())
    m = _NUMBER.fullmatch(stripped)
    if m:
        number = float(m.group(2).replace(",", "") + (f"e{m.group(3)}" if m.group(3) else ""))
        number = -number if m.group(1) == "-" else number
        return Cell("number", s, number / 100 if m.group(4) else number)
    day = _parse_date(stripped)
    if day is not None:
        return Cell("number", s, float((day - _EXCEL_EPOCH).days), is_date=True)
    return Cell("text", s)


def _display(x: float) -> str:
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


class Table:
    """A typed view of ``Data`` (first row = header)."""

    def __init__(self, data: Sequence[Sequence[object]]):
        if not data:
            raise CFExecError("table has no header row")
        self.header = [str(h) for h in data[0]]
        self.rows = [[type_cell(v) for v in row] for row in data[1:]]
        self.n_rows = len(self.rows)

    def default_column(self) -> int:
        lowered = [h.strip().lower() for h in self.header]
        if "value" in lowered:
            return lowered.index("value")
        return len(self.header) - 1

    def column(self, index: int | None) -> list[Cell]:
        idx = self.default_column() if index is None else index
        if not 0 <= idx < len(self.header):
            raise CFExecError(f"column c[{idx}] not in a table of {len(self.header)} columns")
        return [row[idx] if idx < len(row) else Cell("blank", "") for row in self.rows]


# ---- comparisons -----------------------------------------------------------------------------

_ZERO = Cell("number", "0", 0.0)
SCALE_HEADS = ("ColorScale", "DataBar", "IconSet")


def _order_key(cell: Cell) -> tuple[int, object] | None:
    """Excel's cross-type order: numbers (blank = 0) < text < logicals; errors are unordered."""
    if cell.kind in ("number", "blank"):
        return (0, cell.number or 0.0)
    if cell.kind == "text":
        return (1, cell.text.lower())
    if cell.kind == "logical":
        return (2, cell.number)
    return None


def _compare(left: Cell, right: Cell, op: str, sem: Semantics) -> bool:
    if sem.text_as_zero and right.kind == "number" and left.kind in ("text", "blank", "logical"):
        left = _ZERO
    if left.kind == "blank" and right.kind == "text":
        a, b = (1, ""), _order_key(right)  # a blank compared with text is the empty string
    else:
        a, b = _order_key(left), _order_key(right)
    if a is None or b is None:
        return False
    return {
        "GreaterThan": a > b, "GreaterThanEqual": a >= b, "LessThan": a < b,
        "LessThanEqual": a <= b, "Equals": a == b, "NotEquals": a != b,
    }[op]  # fmt: skip


def _numbers(cells: list[Cell], sem: Semantics) -> list[tuple[int, float]]:
    """(row, value) of the cells numeric rules see: numbers, or every non-error cell as 0 if not."""
    out = []
    for i, c in enumerate(cells):
        if c.kind == "number":
            out.append((i, c.number))
        elif sem.text_as_zero and c.kind != "error":
            out.append((i, c.number if c.kind == "logical" else 0.0))
    return out


class _Evaluator:
    def __init__(self, table: Table, sem: Semantics):
        self.table, self.sem = table, sem
        self.everything = set(range(table.n_rows))

    def operand(self, node: Node) -> list[Cell]:
        """One cell per row for an operand: a literal repeated, or a column."""
        table = self.table
        if isinstance(node, Col):
            return table.column(node.index)
        if isinstance(node, Call) and node.head == "LEN":
            cells = table.column(node.args[0].index if node.args else None)
            return [Cell("number", str(len(c.text)), float(len(c.text))) for c in cells]
        if isinstance(node, Num):
            value = node.value / 100 if node.percent else node.value  # GreaterThan(10%) = 0.1, as typed
            return [Cell("number", _display(value), value)] * table.n_rows
        if isinstance(node, Text):
            return [type_cell(node.value)] * table.n_rows
        if isinstance(node, CellRef):
            raise CFExecError(f"cell reference {node.ref} points outside the table")
        raise CFExecError(f"{node} is not a value")

    def split(self, call: Call, n_operands: int) -> tuple[list[Cell], list[list[Cell]]]:
        """Subject cells (explicit first argument or the default column) and operand cells."""
        if len(call.args) == n_operands + 1:
            subject, operands = self.operand(call.args[0]), call.args[1:]
        else:
            subject, operands = self.table.column(None), call.args
        return subject, [self.operand(o) for o in operands]

    def column_of(self, call: Call) -> list[Cell]:
        col = call.args[0] if call.args and isinstance(call.args[0], Col) else None
        return self.table.column(None if col is None else col.index)

    def rule(self, call: Call) -> set[int]:
        head, sem = call.head, self.sem
        if head in SCALE_HEADS:
            raise CFExecError(f"{head} cannot be combined with other rules")
        if head == "AND":
            out = set(self.everything)
            for arg in call.args:
                out &= self.rule(arg)
            return out
        if head == "OR":
            return set().union(*(self.rule(arg) for arg in call.args))
        if head == "NOT":
            return self.everything - self.rule(call.args[0])
        if head in ("Between", "NotBetween"):
            cells, (los, his) = self.split(call, 2)
            inside = {
                i for i, c in enumerate(cells)
                if (_compare(c, los[i], "GreaterThanEqual", sem) and _compare(c, his[i], "LessThanEqual", sem))
                or (_compare(c, his[i], "GreaterThanEqual", sem) and _compare(c, los[i], "LessThanEqual", sem))
            }  # fmt: skip
            if head == "Between":
                return inside
            return {i for i, c in enumerate(cells) if c.kind != "error"} - inside
        if head in ("GreaterThan", "GreaterThanEqual", "LessThan", "LessThanEqual", "Equals", "NotEquals"):
            cells, (other,) = self.split(call, 1)
            return {i for i, c in enumerate(cells) if _compare(c, other[i], head, sem)}
        if head.startswith("Text"):
            cells, (needles,) = self.split(call, 1)
            return {i for i, c in enumerate(cells) if _text_match(head, c, needles[i])}
        if head in ("Top", "Bottom", "TopPercent", "BottomPercent"):
            return self.rank(call)
        return self.column_rule(call)

    def rank(self, call: Call) -> set[int]:
        numeric = _numbers(self.column_of(call), self.sem)
        if not numeric:
            return set()
        count = next((a for a in call.args if isinstance(a, Num)), None)
        percent = call.head.endswith("Percent") or (count is not None and count.percent)
        n = 10.0 if count is None else count.value  # Excel's default is a top/bottom 10
        k = max(1, math.floor(len(numeric) * n / 100)) if percent else int(n)
        if k <= 0:
            return set()
        top = call.head.startswith("Top")
        ranked = sorted((v for _, v in numeric), reverse=top or self.sem.bottom_le_kth_largest)
        cut = ranked[min(k, len(ranked)) - 1]
        if top:
            return {i for i, v in numeric if v >= cut}
        return {i for i, v in numeric if v <= cut}

    def column_rule(self, call: Call) -> set[int]:
        cells, head, sem = self.column_of(call), call.head, self.sem
        if head in ("AboveAverage", "BelowAverage"):
            numeric = _numbers(cells, sem)
            if not numeric:
                return set()
            mean = sum(v for _, v in numeric) / len(numeric)
            return {i for i, v in numeric if (v > mean if head == "AboveAverage" else v < mean)}
        if head in ("Duplicate", "Unique"):
            keys = [None if c.kind in ("blank", "error") else _dup_key(c) for c in cells]
            if head == "Duplicate" and sem.duplicate_first:
                first: dict[tuple, int] = {}
                for i, k in enumerate(keys):
                    first.setdefault(k, i)
                return {i for k, i in first.items() if k is not None}
            counts = Counter(k for k in keys if k is not None)
            want_dup = head == "Duplicate"
            return {i for i, k in enumerate(keys) if k is not None and (counts[k] > 1) == want_dup}
        if head in ("Blanks", "NoBlanks"):
            want_blank = (head == "Blanks") != sem.blanks_inverted
            return {i for i, c in enumerate(cells) if (c.kind == "blank") == want_blank}
        if head in ("Errors", "NoErrors"):
            return {i for i, c in enumerate(cells) if (c.kind == "error") == (head == "Errors")}
        return _date_rule(head, cells)


def _text_match(head: str, cell: Cell, needle_cell: Cell) -> bool:
    """Case-insensitive match of the displayed text; blanks only match an empty TextEquals."""
    if cell.kind == "error":
        return False
    hay = "" if cell.kind == "blank" else cell.text.lower()
    needle = "" if needle_cell.kind == "blank" else needle_cell.text.lower()
    if head == "TextEquals":
        return hay == needle
    if head == "TextNotContains":
        return cell.kind == "blank" or needle not in hay
    if cell.kind == "blank":
        return False
    if head == "TextContains":
        return needle in hay
    if head == "TextStartsWith":
        return hay.startswith(needle)
    return hay.endswith(needle)  # TextEndsWith


def _dup_key(cell: Cell) -> tuple[str, object]:
    if cell.kind == "number":
        return ("n", cell.number)
    return (cell.kind, cell.text.lower())


def _date_rule(head: str, cells: list[Cell]) -> set[int]:
    days = {i: _EXCEL_EPOCH + timedelta(days=int(c.number)) for i, c in enumerate(cells) if c.is_date}
    if not days:
        return set()
    today = max(days.values())
    week0 = today - timedelta(days=(today.weekday() + 1) % 7)  # Excel weeks start on Sunday

    def month(d: date, shift: int) -> tuple[int, int]:
        m = d.year * 12 + d.month - 1 + shift
        return m // 12, m % 12 + 1

    tests = {
        "Yesterday": lambda d: d == today - timedelta(days=1),
        "Today": lambda d: d == today,
        "Tomorrow": lambda d: d == today + timedelta(days=1),
        "Last7Days": lambda d: today - timedelta(days=6) <= d <= today,
        "LastWeek": lambda d: week0 - timedelta(days=7) <= d < week0,
        "ThisWeek": lambda d: week0 <= d < week0 + timedelta(days=7),
        "NextWeek": lambda d: week0 + timedelta(days=7) <= d < week0 + timedelta(days=14),
        "LastMonth": lambda d: (d.year, d.month) == month(today, -1),
        "ThisMonth": lambda d: (d.year, d.month) == month(today, 0),
        "NextMonth": lambda d: (d.year, d.month) == month(today, 1),
    }
    return {i for i, d in days.items() if tests[head](d)}


@dataclass(frozen=True)
class Formatting:
    """What a rule does to a table: ``kind`` ``"highlight"`` (a condition) or the scale head's name."""

    kind: str
    rows: frozenset[int]


def execute(rule: Call, data: Sequence[Sequence[object]] | Table, semantics: Semantics = EXCEL) -> Formatting:
    """Run ``rule`` on ``data``; :class:`CFExecError` when it cannot run on this table.

    Colour scales, data bars and icon sets have no condition: they mark every numeric cell (every
    cell read as a number under ``text_as_zero``) and are told apart from highlights by ``kind``.
    """
    table = data if isinstance(data, Table) else Table(data)
    evaluator = _Evaluator(table, semantics)
    if rule.head in SCALE_HEADS:
        rows = {i for i, _ in _numbers(evaluator.column_of(rule), semantics)}
        return Formatting(rule.head, frozenset(rows))
    return Formatting("highlight", frozenset(evaluator.rule(rule)))
