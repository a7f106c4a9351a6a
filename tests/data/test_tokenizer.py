from __future__ import annotations

import random

import pytest

from nl2code.data.tokenizer import CodeTokenizer, special_tokens

TRICKY = [
    "def f(x):\n\treturn x  # héllo 日本\r\n",
    "    \t  \n\n\n   trailing   ",
    "echo 'naïve café' | tr -d '\\n' > out.txt",
    "emoji 🎉🐍 zero\x00width\u200b line\u2028sep",
    "AND(GreaterThanEqual(25),LessThan(50))",
    "literal <sep> and <mask_1> and <eos> in code",
    "",
]


@pytest.fixture(scope="module")
def tok() -> CodeTokenizer:
    rng = random.Random(0)
    corpus = [s * rng.randint(1, 3) for s in TRICKY for _ in range(20)]
    return CodeTokenizer.train(corpus, vocab_size=400, min_frequency=1)


def test_roundtrip_exact(tok):
    for s in TRICKY:
        assert tok.decode(tok.encode(s)) == s


def test_unseen_bytes_roundtrip(tok):
    # Byte-level: strings made of characters never seen in training still round-trip.
    s = "".join(chr(c) for c in range(0x400, 0x460)) + "\U0001f600\x7f"
    assert tok.decode(tok.encode(s)) == s


def test_special_tokens_fixed_ids_and_never_from_text(tok):
    specials = special_tokens()
    assert [tok.token_id(t) for t in specials] == list(range(len(specials)))
    assert tok.pad_id == 0 and tok.eos_id == 1
    ids = tok.encode("x <sep> <mask_1> <eos>")
    assert not set(ids) & tok.special_ids
    assert tok.decode([tok.fim_prefix_id, *tok.encode("ab"), tok.eos_id]) == "<fim_prefix>ab<eos>"
    assert tok.decode([tok.sep_id, *tok.encode("ab")], skip_special=True) == "ab"
    assert tok.sentinel_id(1) != tok.sentinel_id(2)
    with pytest.raises(ValueError):
        tok.sentinel_id(17)


def test_save_load_identical(tok, tmp_path):
    tok.save(tmp_path)
    again = CodeTokenizer.load(tmp_path)
    assert again.vocab_size == tok.vocab_size
    for s in TRICKY:
        assert again.encode(s) == tok.encode(s)


def test_vocab_too_small_rejected():
    with pytest.raises(ValueError, match="vocab_size"):
        CodeTokenizer.train(["abc"], vocab_size=100)


SHARED_SOURCES = [
    ("codefusion-bash", "codefusion/benchmarks/BashBenchmarks.json"),
    ("codefusion-python", "codefusion/benchmarks/PythonBenchmarks.json"),
    ("codefusion-cf", "codefusion/benchmarks/CFRuleBenchmarks.json"),
    ("snippets", "codefusion/pretraining/BashSnippets.txt"),
    ("snippets", "codefusion/pretraining/ConditionalFormattingSnippets.txt"),
    ("conala", "conala"),
    ("nl2bash", "nl2bash"),
    ("mbpp", "mbpp/mbpp.jsonl"),
    ("humaneval", None),
]


def test_roundtrip_every_example_of_every_source(shared_data):
    """A tokenizer trained on the shared data reproduces every NL and code string exactly."""
    from nl2code.data.sources import load_source

    texts: list[str] = []
    for name, rel in SHARED_SOURCES:
        result = load_source(name, shared_data / rel if rel else None)
        assert result.records, name
        for r in result.records:
            texts.append(r.nl)
            texts.append(r.code)
    rng = random.Random(0)
    tok = CodeTokenizer.train(rng.sample(texts, 20000), vocab_size=2048)
    unique = sorted(set(texts))
    encoded = tok.encode_batch(unique)
    decoded = tok.decode_batch(encoded)
    bad = [s for s, d in zip(unique, decoded) if s != d]
    assert not bad, f"{len(bad)} strings do not round-trip, e.g. {bad[0]!r}"
    assert len(unique) > 100_000


def test_split_spaces_gives_a_word_one_token_after_a_space_or_a_bracket(tmp_path):
    texts = ["color the cells which contain FB", "TextContains(FB)", "cells greater than 85", "GreaterThan(85)"] * 5
    plain = CodeTokenizer.train(texts, vocab_size=400, min_frequency=1)
    split = CodeTokenizer.train(texts, vocab_size=400, min_frequency=1, split_spaces=True)
    for word in ("FB", "85"):
        after_space, after_bracket = split.encode(f" {word}")[-1], split.encode(f"({word}")[-1]
        assert after_space == after_bracket and split.decode([after_space]) == word
        assert plain.encode(f" {word}")[-1] != plain.encode(f"({word}")[-1]  # why the option exists
    sample = "if x  == 1:\n\tprint( 'a b' )\n"
    assert split.decode(split.encode(sample)) == sample
    split.save(tmp_path / "t")
    assert CodeTokenizer.load(tmp_path / "t").encode(sample) == split.encode(sample)
