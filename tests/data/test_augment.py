"""Copy augmentation: shared values are replaced consistently on both sides; structure never is."""

from __future__ import annotations

import random

from nl2code.data.augment import copy_variants, random_like, tokens
from nl2code.data.records import Record


def rec(i: int, nl: str, code: str) -> Record:
    return Record(f"cf/{i}", "train", nl, code, "cf")


RECORDS = [
    rec(0, "color cells greater than 85 and smaller than 15", "Between(15,85)"),
    rec(1, "cells that contain FB", "TextContains(FB)"),
    rec(2, "cells that contain 经济 please", "TextContains(经济)"),
    rec(3, "highlight the duplicates", "Duplicate()"),
] + [rec(10 + i, f"cells containing word{i}", f"TextContains(word{i})") for i in range(20)]


def test_shared_values_are_replaced_on_both_sides_and_structure_is_kept():
    out, shared = copy_variants(RECORDS, 3, seed=0)
    assert shared == 23 and len(out) == len(RECORDS) + 3 * 23  # Duplicate() shares nothing
    assert out[: len(RECORDS)] == RECORDS
    variants = [r for r in out if r.task_id.startswith("cf/0#")]
    assert [r.task_id for r in variants] == ["cf/0#copy0", "cf/0#copy1", "cf/0#copy2"]
    for v in variants:
        a, b = v.code.removeprefix("Between(").removesuffix(")").split(",")
        assert v.nl == f"color cells greater than {b} and smaller than {a}"  # the same values, copied
        assert len(a) == len(b) == 2 and a[0] != "0" and (a, b) != ("15", "85")
    fb = [r for r in out if r.task_id.startswith("cf/1#")]
    for v in fb:  # TextContains occurs in most programs: structure, never replaced
        value = v.code.removeprefix("TextContains(").removesuffix(")")
        # another pair's shared word: a real value's look and tokenization
        assert (
            v.nl == f"cells that contain {value}"
            and value != "FB"
            and value in {"经济", *(f"word{i}" for i in range(20))}
        )
    assert copy_variants(RECORDS, 3, seed=0) == (out, shared)
    assert copy_variants(RECORDS, 3, seed=1)[0] != out


def test_random_values_keep_their_shape():
    rng = random.Random(0)
    for value in ("85", "0.5", "12.75", "FB", "Hispanic", "word3", "x", "经济"):
        new = random_like(value, rng)
        assert tokens(new) == {new}  # still one token, so the substitution is exact
        if value[0].isdigit():
            assert len(new) == len(value) and new.count(".") == value.count(".")
        else:
            assert len(new) == min(len(value), 12) and new.isalpha()
            assert new[0].isupper() == value[0].isupper()
