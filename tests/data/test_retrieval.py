"""TF-IDF retrieval, the retrieval-augmented AR prompt and CodeFusion encoder input (objective.retrieval_k)."""

from __future__ import annotations

import numpy as np
import pytest

from nl2code.data.collate import Example
from nl2code.data.records import Record
from nl2code.data.retrieval import Retriever, TfIdf, rag_context, rag_prefix, retrieved_prefix
from nl2code.data.tokenizer import CodeTokenizer
from nl2code.objectives.autoregressive import CausalLMConfig, RetrievalPrefix
from nl2code.objectives.diffusion import CodeFusionLossConfig, RetrievalContext

TRAIN = [
    ("list all files in the current folder", "ls -a\n"),
    ("count lines in a file", "wc -l file\n"),
    ("count words in a file", "wc -w file\n"),
    ("remove all files in the current folder", "rm -f *\n"),
    ("count lines in a file", "wc -l file\n"),  # an exact duplicate pair
]


def records() -> list[Record]:
    return [Record(f"t/{i}", "train", nl, code, "bash") for i, (nl, code) in enumerate(TRAIN)]


def test_tfidf_ranks_by_cosine_and_breaks_ties_by_index():
    index = TfIdf(["apple banana", "banana cherry", "cherry", "apple banana"])
    assert index.nearest("apple") == [0, 3]  # equal scores: lower index first
    assert index.nearest("cherry")[0] == 2
    assert index.nearest("durian") == []
    assert np.isclose(index.scores("apple banana")[0], 1.0)


def test_neighbours_are_distinct_and_leave_the_row_out():
    r = Retriever(records())
    assert r.neighbours("count lines in a file", 2) == ["wc -l file", "wc -w file"]  # duplicate command once
    own = r.row_of("count lines in a file", "wc -l file\n")
    assert own == 1
    # leaving row 1 out still finds its duplicate (row 4): only the row itself is excluded
    assert r.neighbours("count lines in a file", 1, exclude=own) == ["wc -l file"]
    assert r.neighbours("list all files in the current folder", 1, exclude=0) == ["rm -f *"]
    assert r.row_of("unseen", "x") == -1


def test_rag_prefix_keeps_whole_commands_within_budget():
    assert rag_prefix([[5, 6], [7]], [9], eom_id=4, budget=10) == [5, 6, 9, 7, 9, 4]
    assert rag_prefix([[5, 6], [7]], [9], eom_id=4, budget=5) == [5, 6, 9, 4]
    assert rag_prefix([[5, 6]], [9], eom_id=4, budget=2) == [4]
    assert rag_prefix([[5, 6]], [9], eom_id=4, budget=0) == []  # not even <eom> fits


def test_retrieval_transform_prefixes_unscored_neighbours():
    tok = CodeTokenizer.train([t for p in TRAIN for t in p], vocab_size=300)
    retr = Retriever(records())
    nl, code = TRAIN[0]
    ids = [*tok.encode(nl), tok.sep_id, *tok.encode(code), tok.eos_id]
    mask = [False] * (len(tok.encode(nl)) + 1) + [True] * (len(tok.encode(code)) + 1)
    ex = Example(np.array(ids), np.array(mask))
    out = RetrievalPrefix(tok, retr, k=1, max_len=64)(ex)
    prefix = retrieved_prefix(tok, retr, nl, 1, 64, exclude=0)
    assert tok.decode(prefix) == "rm -f *\n<eom>"  # its own command "ls -a" is left out
    assert out.input_ids.tolist() == [*prefix, *ids]
    assert not out.loss_mask[: len(prefix)].any() and out.loss_mask[len(prefix) :].tolist() == mask
    short = RetrievalPrefix(tok, retr, k=1, max_len=len(ids) + 1)(ex)  # no room: only <eom>
    assert short.input_ids.tolist() == [tok.eom_id, *ids]
    full = RetrievalPrefix(tok, retr, k=1, max_len=len(ids))(ex)  # a row max_len long stays max_len long
    assert full.input_ids.tolist() == ids and full.loss_mask.tolist() == mask


def test_retrieval_k_is_validated():
    with pytest.raises(ValueError):
        CausalLMConfig(retrieval_k=-1)


def test_codefusion_retrieval_context_prefixes_the_encoder_input_only():
    tok = CodeTokenizer.train([t for p in TRAIN for t in p], vocab_size=300)
    retr = Retriever(records())
    nl, code = TRAIN[0]
    code_ids = [*tok.encode(code), tok.eos_id]
    ex = Example(np.array(code_ids), np.ones(len(code_ids), bool), {"nl": np.array(tok.encode(nl))})
    out = RetrievalContext(tok, retr, k=1, length=64)(ex)
    assert tok.decode(out.extras["nl"].tolist()) == "rm -f *\n<eom>" + nl  # own command left out
    assert out.input_ids.tolist() == code_ids and out.loss_mask.all()  # the target is untouched
    # The same layout at inference (no row to leave out: the nearest is its own command here).
    assert tok.decode(rag_context(tok, retr, nl, tok.encode(nl), 1, 64)) == "ls -a\n<eom>" + nl
    # The utterance is kept whole; the prefix only gets the room left (none here).
    nl_ids = tok.encode(nl)
    assert rag_context(tok, retr, nl, nl_ids, 1, len(nl_ids) + 1) == nl_ids
    assert len(rag_context(tok, retr, nl, nl_ids, 1, len(nl_ids) + 3)) <= len(nl_ids) + 3


def test_codefusion_retrieval_k_is_validated():
    with pytest.raises(ValueError, match="retrieval_k"):
        CodeFusionLossConfig(retrieval_k=-1)
    with pytest.raises(ValueError, match="finetune"):
        CodeFusionLossConfig(task="cpd", retrieval_k=1)
