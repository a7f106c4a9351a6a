"""The judge's channel carries plain literal values only, both ways, and never runs what it reads."""

from __future__ import annotations

import collections
import math

import pytest

from nl2code.eval.wire import Ref, WireError, decode, encode

PLAIN = [None, True, False, 0, -7, 10**400, 2.5, -0.0, 1e308, 1 + 2j, "", "a\nb'\"", b"\x00\xff", [], (), (1,),
         [1, (2, 3), {4}, frozenset({5}), set(), {"k": [None]}], {(1, 2): {3: "x"}}]  # fmt: skip


@pytest.mark.parametrize("value", PLAIN, ids=range(len(PLAIN)))
def test_plain_values_round_trip_with_their_types(value):
    back = decode(encode(value))
    assert back == value and type(back) is type(value)


def test_special_floats_round_trip():
    assert math.isnan(decode(encode(float("nan"))))
    assert decode(encode([float("inf"), float("-inf")])) == [float("inf"), float("-inf")]


def test_subclasses_travel_as_their_base_type():
    class Liar(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

    point = collections.namedtuple("Point", "x y")(1, 2)
    assert type(decode(encode(Liar(3)))) is int and decode(encode(Liar(3))) != 4
    assert decode(encode(point)) == (1, 2) and type(decode(encode(point))) is tuple
    assert decode(encode(collections.Counter("aab"))) == {"a": 2, "b": 1}


def test_objects_become_references_or_are_refused():
    class Thing:
        pass

    kept = []
    text = encode([Thing(), 1], keep=lambda o: kept.append(o) or len(kept) - 1)
    assert text == "[Ref(0), 1]" and isinstance(kept[0], Thing)
    with pytest.raises(WireError, match="cannot be sent"):
        encode(Thing())
    assert decode("Ref(3)", lambda n: ("resolved", n)) == ("resolved", 3)
    assert isinstance(decode("Ref(3)"), Ref)


def test_builtins_travel_by_name():
    assert decode(encode([int, str, len])) == [int, str, len]
    with pytest.raises(WireError):
        decode("Builtin('__import__')")
    with pytest.raises(WireError):
        decode("Builtin('no_such_builtin')")


@pytest.mark.parametrize(
    "text",
    ["__import__('os').system('true')", "x", "(1).real", "[i for i in range(3)]", "lambda: 1", "Ref('a')",
     "float('1', '2')", "{[1]: 2}", "1 + 1", "f'{1}'", "[" * 100000, "", "1\n2"],
)  # fmt: skip
def test_anything_but_a_literal_is_refused(text):
    with pytest.raises(WireError):
        decode(text)


def test_self_reference_and_deep_nesting_are_refused():
    loop: list = []
    loop.append(loop)
    with pytest.raises(WireError):
        encode(loop)
    deep: list = []
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(WireError):
        encode(deep)
