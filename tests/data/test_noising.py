"""Span corruption and FIM: exact inverses, formats, file boundaries, rates, batch-stream wiring."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from nl2code.data.collate import Example
from nl2code.data.noising import (
    InfillMixture,
    SpecialIds,
    fim_inverse,
    fim_transform,
    random_spans,
    span_corruption,
    span_reconstruct,
)
from nl2code.data.pipeline import BatchIterator
from nl2code.data.tokenizer import CodeTokenizer

CODE = [
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    print(i * i)  # squares\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n",
    "s = 'héllo wörld ✓'\nprint(s.upper())\n",
    "import os\nfiles = [f for f in os.listdir('.') if f.endswith('.py')]\n",
]


@pytest.fixture(scope="module")
def tok() -> CodeTokenizer:
    return CodeTokenizer.train(CODE * 3, vocab_size=320)


@pytest.fixture(scope="module")
def special(tok) -> SpecialIds:
    return SpecialIds.from_tokenizer(tok)


def test_random_spans_are_sorted_separate_and_sized():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(2, 40))
        k = int(rng.integers(1, n // 2 + 1))
        m = int(rng.integers(k, n - k + 2))
        spans = random_spans(n, m, k, rng)
        assert len(spans) == k and sum(b - a for a, b in spans) == m
        assert all(0 <= a < b <= n for a, b in spans)
        assert all(spans[i][1] < spans[i + 1][0] for i in range(k - 1))  # at least one token apart
    with pytest.raises(ValueError):
        random_spans(5, 4, 3, rng)  # 4 masked + 2 separators > 5


def test_span_corruption_is_invertible_and_well_formed(special):
    rng = np.random.default_rng(1)
    vocab = np.arange(100, 200)
    for _ in range(300):
        ids = rng.choice(vocab, size=int(rng.integers(2, 60))).tolist()
        out = span_corruption(ids, rng, special, mask_ratio=(0.0, 0.9), mean_span_len=3, max_spans=5)
        assert span_reconstruct(out.ids, special) == ids  # every original token recovered, in place
        cut = out.ids.index(special.eos)
        body, tail = out.ids[:cut], out.ids[cut:]
        used = [t for t in body if t in special.sentinels]
        assert used == list(special.sentinels[: len(used)]) and 1 <= len(used) <= 5  # <mask_1>, <mask_2>, ...
        assert tail[:2] == [special.eos, special.sep] and tail[-1] == special.eom
        assert tail.count(special.eom) == len(used)
        assert len(out.ids) == len(ids) + 3 * len(used) + 2
        assert out.answer == [False] * (cut + 2) + [True] * (len(tail) - 2)


def test_single_span_corruption_contains_the_infill_prompt(special):
    rng = np.random.default_rng(2)
    ids = list(range(100, 130))
    out = span_corruption(ids, rng, special, mask_ratio=(0.2, 0.2), mean_span_len=100, max_spans=16)
    m1 = special.sentinels[0]
    a = out.ids.index(m1)
    middle = out.ids[out.ids.index(special.sep) + 2 : -1]
    prefix, suffix = ids[:a], ids[a + len(middle) :]
    prompt = [*prefix, m1, *suffix, special.eos, special.sep, m1]
    assert out.ids[: len(prompt)] == prompt
    assert middle == ids[a : a + len(middle)] and len(middle) == 6


def test_fim_is_invertible_in_text_and_tokens(tok, special):
    rng = np.random.default_rng(3)
    modes = Counter()
    for i in range(200):
        text = CODE[i % len(CODE)]
        ids = tok.encode(text)
        out = fim_transform(ids, rng, special, tok.encode, tok.decode, spm_rate=0.5)
        assert out is not None
        modes[out.mode] += 1
        recovered = fim_inverse(out.ids, special, tok.decode)
        assert recovered == text and tok.encode(recovered) == ids
        assert out.ids[0] == special.fim_prefix and out.ids[-1] == special.eos
        mid = out.ids.index(special.fim_middle)
        if out.mode == "psm":
            assert out.answer == [False] * (mid + 1) + [True] * (len(out.ids) - mid - 1)
    assert 70 < modes["spm"] < 130  # spm_rate 0.5


def test_fim_skips_rows_that_do_not_round_trip(tok, special):
    ids = tok.encode("s = 'é'\n")
    broken = ids[:-1] + tok.encode("é")[:1]  # ends inside a multi-byte character
    if tok.encode(tok.decode(broken)) != broken:
        assert fim_transform(broken, np.random.default_rng(0), special, tok.encode, tok.decode) is None


def doc(tok, nl: str, code: str) -> tuple[list[int], list[bool]]:
    n, c = tok.encode(nl), tok.encode(code)
    return [*n, tok.sep_id, *c, tok.eos_id], [False] * (len(n) + 1) + [True] * (len(c) + 1)


def test_mixture_rewrites_each_file_and_keeps_the_nl(tok, special):
    docs = [doc(tok, f"task {i}", CODE[i]) for i in range(3)]
    ids = [t for d, _ in docs for t in d]
    mask = [m for _, ms in docs for m in ms]
    mix = InfillMixture(special, tok.encode, tok.decode, max_len=10_000, span_rate=0.5, fim_rate=0.5,
                        protect_prefix=True, mask_ratio=(0.1, 0.5), mean_span_len=3)
    modes = Counter()
    row = Example(np.array(ids), np.array(mask))
    for seed in range(60):
        out = mix(row, np.random.default_rng(seed))
        assert out.input_ids.tolist() == mix(row, np.random.default_rng(seed)).input_ids.tolist()  # seeded
        # split the output back into documents: each starts with its untouched NL and <sep>
        rest = out.input_ids.tolist()
        for d, _ in docs:
            nl = d[: d.index(tok.sep_id) + 1]
            assert rest[: len(nl)] == nl
            rest = rest[len(nl) :]
            code = d[len(nl) : -1]
            if rest[0] == special.fim_prefix:
                end = rest.index(special.eos) + 1
                assert tok.encode(fim_inverse(rest[:end], special, tok.decode)) == code
                modes["fim"] += 1
            elif rest[rest.index(special.eos) + 1 :][:1] == [special.sep]:  # span-corrupted
                end = rest.index(special.eos) + 2
                while end < len(rest) and rest[end] in special.sentinels:
                    end = rest.index(special.eom, end) + 1
                assert span_reconstruct(rest[:end], special) == code  # spans stayed inside this file
                modes["span"] += 1
            else:
                end = len(code) + 1
                assert rest[:end] == code + [tok.eos_id]
                modes["plain"] += 1
            rest = rest[end:]
        assert rest == []
    assert modes["span"] > 60 and modes["fim"] > 25 and modes["plain"] > 25  # 50% / 25% / 25% of 180


def test_mixture_truncates_and_scores_rewrites(tok, special):
    ids, mask = doc(tok, "nl", CODE[2])
    mix = InfillMixture(special, tok.encode, tok.decode, max_len=len(ids), span_rate=1.0, protect_prefix=True)
    out = mix(Example(np.array(ids), np.array(mask)), np.random.default_rng(0))
    assert len(out) == len(ids)  # span corruption grows the file; cut back to max_len
    n_nl = ids.index(tok.sep_id) + 1
    assert not out.loss_mask[:n_nl].any() and out.loss_mask[n_nl:].all()  # NL stays unscored
    answer_only = InfillMixture(special, tok.encode, tok.decode, max_len=1000, span_rate=1.0, loss_on="answer")
    out = answer_only(Example(np.array(ids), np.array(mask)), np.random.default_rng(0))
    first_answer = out.input_ids.tolist().index(special.sep, out.input_ids.tolist().index(special.eos)) + 1
    assert out.loss_mask.tolist() == [False] * first_answer + [True] * (len(out) - first_answer)


def test_batch_stream_transform_is_fresh_per_epoch_and_resumable(tok, special):
    examples = [Example(*map(np.array, doc(tok, f"t{i}", CODE[i % 5]))) for i in range(8)]
    mix = InfillMixture(special, tok.encode, tok.decode, max_len=200, span_rate=1.0, protect_prefix=True)

    def stream() -> BatchIterator:
        return BatchIterator(examples, batch_size=4, pad_id=0, seed=3, shuffle=False, transform=mix)

    a = stream()
    batches = [next(a).input_ids for _ in range(6)]  # 3 epochs of 2 batches
    assert not np.array_equal(batches[0], batches[2])  # a new corruption every epoch
    b = stream()
    next(b), next(b), next(b)
    c = stream()
    c.load_state_dict(b.state_dict())
    assert all(np.array_equal(next(c).input_ids, x) for x in batches[3:])
    two_ranks = [BatchIterator(examples, batch_size=4, pad_id=0, seed=3, shuffle=False, transform=mix,
                               rank=r, world_size=2) for r in range(2)]
    halves = [next(it) for it in two_ranks]
    joined = [row[row != 0].tolist() for h in halves for row in h.input_ids]
    assert joined == [row[row != 0].tolist() for row in batches[0]]  # same rows as one process
