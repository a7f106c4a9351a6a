"""Records -> token sequences (formats, loss masks, overlong handling) and train/eval splits."""

from __future__ import annotations

import dataclasses

import pytest

from nl2code.data.config import DataConfig
from nl2code.data.pipeline import load_splits, preview_set, tokenize
from nl2code.data.records import DataError, Record
from nl2code.data.tokenizer import CodeTokenizer

TEXTS = ["def add(a, b):\n    return a + b\n", "Add two numbers.", "def sub(a, b):\n    return a - b\n"] * 5


@pytest.fixture(scope="module")
def tok() -> CodeTokenizer:
    return CodeTokenizer.train(TEXTS, vocab_size=300)


def rec(nl: str, code: str, task: str = "t") -> Record:
    return Record(task_id=task, split="train", nl=nl, code=code, language="python")


def test_nl_code_format_masks_the_prompt(tok):
    r = rec("Add two numbers.", "def add(a, b):\n    return a + b\n")
    (e,), counts = tokenize([r], tok, DataConfig(format="nl_code"))
    nl, code = tok.encode(r.nl), tok.encode(r.code)
    assert e.input_ids.tolist() == [*nl, tok.sep_id, *code, tok.eos_id]
    assert e.loss_mask.tolist() == [False] * (len(nl) + 1) + [True] * (len(code) + 1)
    assert tok.decode(e.input_ids[len(nl) + 1 : -1]) == r.code  # lossless
    (e_all,), _ = tokenize([r], tok, DataConfig(format="nl_code", loss_on="all"))
    assert e_all.loss_mask.all()
    assert counts == {"examples": 1, "truncated": 0, "dropped_overlong": 0, "dropped_no_target": 0}


def test_code_format(tok):
    (e,), _ = tokenize([rec("ignored", "x = 1\n")], tok, DataConfig(format="code"))
    assert e.input_ids.tolist() == [*tok.encode("x = 1\n"), tok.eos_id] and e.loss_mask.all()


def test_overlong_examples_are_truncated_or_dropped_and_counted(tok):
    long = rec("Add two numbers.", "def add(a, b):\n    return a + b\n" * 10)
    short = rec("", "x\n")
    out, counts = tokenize([long, short], tok, DataConfig(max_len=16))
    assert len(out[0]) == 16 and counts["truncated"] == 1
    out, counts = tokenize([long, short], tok, DataConfig(max_len=16, overlong="drop"))
    assert len(out) == 1 and counts["dropped_overlong"] == 1
    # An NL prompt that fills max_len leaves nothing to learn: dropped, not trained on.
    out, counts = tokenize([rec("Add two numbers. " * 10, "x\n")], tok, DataConfig(max_len=8))
    assert out == [] and counts["dropped_no_target"] == 1
    # Packing keeps long examples whole (rows are cut later).
    out, _ = tokenize([long], tok, DataConfig(max_len=16, packing=True))
    assert len(out[0]) > 16


def test_preview_prompts(tok):
    recs = [rec("", "x\n"), rec("Add two numbers.", "def add(a, b): ...\n")]
    ps = preview_set(recs, tok, DataConfig(), count=5)
    assert ps.prompts == [[*tok.encode("Add two numbers."), tok.sep_id]]
    assert ps.references == ["def add(a, b): ...\n"]
    code = preview_set(recs, tok, DataConfig(format="code"), count=1)
    assert code.prompts == [tok.encode("x\n")]


def test_splits_from_the_source_and_stable_hold_out():
    cfg = DataConfig(source="pysource", options={"max_functions": 200}, eval_fraction=0.2)
    train, evals, notes = load_splits(cfg)
    assert train and evals and not {r.task_id for r in train} & {r.task_id for r in evals}
    assert all(r.split == "train" for r in train + evals)
    again, evals2, _ = load_splits(cfg)
    assert [r.task_id for r in evals2] == [r.task_id for r in evals]
    assert any("held out" in n for n in notes)
    capped, _, _ = load_splits(dataclasses.replace(cfg, max_examples=10))
    assert [r.task_id for r in capped] == [r.task_id for r in train[:10]]
    _, test_split, _ = load_splits(dataclasses.replace(cfg, eval_split="test", options={"max_functions": 2000}))
    assert test_split and all(r.split == "test" for r in test_split)


def test_missing_split_is_a_data_error():
    cfg = DataConfig(source="pysource", options={"max_functions": 50}, split="validation")
    with pytest.raises(DataError, match="no records in split 'validation'"):
        load_splits(cfg)
