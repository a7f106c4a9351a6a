"""Copy augmentation: teach a model to copy values from the utterance into the code (``data.copy_augment``).

On a small set (712 CF rules) a model memorises the training values (``TextContains(FB)`` becomes
``TextEquals(Hispanic)``, benchmarks/results/cf_matched.md) instead of copying them from the request.
Each training pair gets ``n`` variants in which every *value* it shares between utterance and code is
replaced, consistently on both sides, by another value of its kind, so the value can only be
got right by copying it.

A value is a word token (``\\d+(\\.\\d+)?`` or ``\\w+``) found as a whole token in both the utterance
and the code, and rare in the codes: tokens in more than ``max_share`` of the training programs
(function names, flags, keywords) are structure and never replaced. A number becomes a random number
of the same digit count and decimal point; a word becomes another pair's shared word, so it keeps the
look (and the tokenization) of real values: random letter strings split into many tokens, and at a
10-minute budget the model learned to write random strings rather than to copy them
(benchmarks/results/cf_matched_copy_random.md). Variants are seeded.
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from nl2code.data.records import Record

_TOKEN = re.compile(r"\d+(?:\.\d+)?|\w+")


def tokens(text: str) -> set[str]:
    return set(_TOKEN.findall(text))


def structure_tokens(records: Sequence[Record], max_share: float) -> set[str]:
    """Tokens that occur in more than ``max_share`` of the records' programs."""
    counts = Counter(t for r in records for t in tokens(r.code))
    return {t for t, c in counts.items() if c > max_share * len(records)}


def random_like(value: str, rng: random.Random) -> str:
    """A random value of the same shape: digits for digits (no new leading zero), letters for the rest."""
    if value[0].isdigit():
        out = [rng.choice(string.digits) if ch.isdigit() else ch for ch in value]
        if len(value) > 1 and value[1] != ".":
            out[0] = rng.choice("123456789")
        return "".join(out)
    n = min(len(value), 12)
    word = "".join(rng.choice(string.ascii_lowercase) for _ in range(n))
    if value.isupper() and len(value) > 1:
        return word.upper()
    return word[0].upper() + word[1:] if value[0].isupper() else word


def _other(value: str, words: Sequence[str], rng: random.Random) -> str:
    """A random number like ``value``, or another shared word (a random one when there is no other)."""
    if value[0].isdigit() or len(words) < 2:
        return random_like(value, rng)
    word = rng.choice(words)
    while word == value:
        word = rng.choice(words)
    return word


def _substitute(text: str, mapping: dict[str, str]) -> str:
    return _TOKEN.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)


def copy_variants(records: Sequence[Record], n: int, seed: int, max_share: float = 0.05) -> tuple[list[Record], int]:
    """``records`` followed by ``n`` variants of each pair that shares a value between utterance and
    code; returns them and how many pairs had such values."""
    structure = structure_tokens(records, max_share)
    rng = random.Random(seed)
    shared = [sorted((tokens(r.nl) & tokens(r.code)) - structure) for r in records]
    words = sorted({v for values in shared for v in values if not v[0].isdigit()})
    out, shared_pairs = list(records), 0
    for r, values in zip(records, shared, strict=True):
        if not values:
            continue
        shared_pairs += 1
        for i in range(n):
            mapping = {v: _other(v, words, rng) for v in values}
            out.append(replace(r, task_id=f"{r.task_id}#copy{i}", nl=_substitute(r.nl, mapping),
                               code=_substitute(r.code, mapping)))  # fmt: skip
    return out, shared_pairs


__all__ = ["copy_variants", "random_like", "structure_tokens", "tokens"]
