"""The CF (Excel conditional-formatting) rule language: parser, interpreter and execution match."""

from nl2code.eval.cf.interpreter import (
    EXCEL,
    LABELS,
    Cell,
    CFExecError,
    Formatting,
    Semantics,
    Table,
    execute,
    type_cell,
)
from nl2code.eval.cf.parser import CFParseError, parse_rule

__all__ = [
    "EXCEL",
    "LABELS",
    "CFExecError",
    "CFParseError",
    "Cell",
    "Formatting",
    "Semantics",
    "Table",
    "execute",
    "parse_rule",
    "type_cell",
]
