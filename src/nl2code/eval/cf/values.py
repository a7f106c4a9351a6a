"""Value linking for CF rules: bind a rule's literals to the values the request spells out.

A retrieved or generated rule often has the right shape and the wrong constant: the nearest train
request to "highlight sales above 900" carries ``GreaterThan(500)``. This is the edit step of
retrieve-and-edit, the value half of schema linking: a numeric literal the request does not contain
is replaced by a number the request names and the rule does not use, in order; a text literal the
request does not contain is replaced by a quoted string of the request, in order. Nothing else is
guessed (an unquoted word is not a value the request marks as one), the gold is never read, and a
rule whose literals all occur in the request, that has none, or that does not parse is returned
unchanged. ``Between`` keeps its bounds in order after a substitution.
"""

from __future__ import annotations

import re
from dataclasses import replace

from nl2code.eval.cf.link import to_source
from nl2code.eval.cf.parser import Call, CFParseError, Node, Num, Text, parse_rule

__all__ = ["link_values", "request_numbers", "request_strings"]

# a number not glued to a word (A1, 2nd, 70,000rs) or to another number's decimal point; 1,000 is one number
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\w|,\d)")
_QUOTED = re.compile(r"\"([^\"]+)\"|'([^']+)'|“([^”]+)”")


def request_numbers(nl: str) -> list[float]:
    """The numbers ``nl`` spells out, in order (thousands separators dropped)."""
    return [float(m.replace(",", "")) for m in _NUMBER.findall(nl)]


def request_strings(nl: str) -> list[str]:
    """The quoted strings of ``nl``, in order."""
    return [next(g for g in groups if g) for groups in _QUOTED.findall(nl)]


def _literals(node: Node) -> list[Node]:
    if isinstance(node, Call):
        return [leaf for a in node.args for leaf in _literals(a)]
    return [node] if isinstance(node, Num | Text) else []


def _substitutions(rule: Call, nl: str) -> dict[int, Node]:
    """id(literal) -> its replacement, for the literals ``nl`` does not contain."""
    literals = _literals(rule)
    numbers, used = request_numbers(nl), {x.value for x in literals if isinstance(x, Num)}
    stray_nums = [x for x in literals if isinstance(x, Num) and x.value not in numbers]
    spare_nums = [v for v in dict.fromkeys(numbers) if v not in used]
    lowered = nl.lower()
    stray_text = [x for x in literals if isinstance(x, Text) and x.value.lower() not in lowered]
    texts = {x.value for x in literals if isinstance(x, Text)}
    spare_text = [s for s in dict.fromkeys(request_strings(nl)) if s not in texts]
    out: dict[int, Node] = {}
    if stray_nums and len(spare_nums) >= len(stray_nums):
        out.update({id(x): replace(x, value=v) for x, v in zip(stray_nums, spare_nums, strict=False)})
    if stray_text and len(spare_text) >= len(stray_text):
        out.update({id(x): replace(x, value=v) for x, v in zip(stray_text, spare_text, strict=False)})
    return out


def _rebuild(node: Node, subs: dict[int, Node]) -> Node:
    if not isinstance(node, Call):
        return subs.get(id(node), node)
    args = tuple(_rebuild(a, subs) for a in node.args)
    lo, hi = args[-2:] if len(args) >= 2 else (None, None)
    if node.head == "Between" and isinstance(lo, Num) and isinstance(hi, Num) and lo.value > hi.value:
        args = (*args[:-2], hi, lo)
    return Call(node.head, args)


def link_values(code: str, nl: str) -> str:
    """``code`` with the literals ``nl`` does not contain replaced by the values it spells out (else unchanged)."""
    try:
        rule = parse_rule(code.strip())
    except CFParseError:
        return code
    if not isinstance(rule, Call):
        return code
    subs = _substitutions(rule, nl)
    return to_source(_rebuild(rule, subs)) if subs else code
