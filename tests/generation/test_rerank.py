"""Retrieve-then-rerank: the batched scores equal one-at-a-time scores, and the weight interpolates
between the model's order and the retrieval order."""

from __future__ import annotations

import pytest
import torch

from nl2code.data.records import Record
from nl2code.data.retrieval import Retriever
from nl2code.data.tokenizer import CodeTokenizer
from nl2code.generation import rerank as rr
from nl2code.models.codegen import CodeGenConfig, CodeGenLM

ROWS = [
    ("delete the file notes", "rm notes"),
    ("show the file notes", "cat notes"),
    ("count lines in the file data", "wc -l data"),
    ("make a directory called build", "mkdir -p build"),
    ("show the directory build", "ls build"),
]


class Gen:
    """What rerank reads of an ARGenerator: the model, tokenizer, stop ids and the NL prompt layout."""

    def __init__(self, model: CodeGenLM, tok: CodeTokenizer):
        self.model, self.tok, self.stop_ids = model, tok, [tok.eos_id]

    def encode_prompt(self, prompt: str) -> list[int]:
        return [*self.tok.encode(prompt), self.tok.sep_id]


@pytest.fixture(scope="module")
def gen() -> Gen:
    tok = CodeTokenizer.train([t for row in ROWS for t in row], vocab_size=300)
    cfg = CodeGenConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4, max_seq_len=48, mlp="swiglu")
    return Gen(CodeGenLM(cfg, generator=torch.Generator().manual_seed(0)).eval(), tok)


@pytest.fixture(scope="module")
def retriever() -> Retriever:
    return Retriever([Record(f"t/{i}", "train", nl, code, "bash") for i, (nl, code) in enumerate(ROWS)])


def test_batched_scores_equal_one_at_a_time_and_by_hand(gen):
    texts = ["rm notes", "cat notes | wc -l", "ls", "mkdir -p build && ls build"]
    batched = rr.completion_logprobs(gen, "show the file notes", texts, batch_size=4)
    single = rr.completion_logprobs(gen, "show the file notes", texts, batch_size=1)
    torch.testing.assert_close(torch.tensor(batched), torch.tensor(single), atol=1e-5, rtol=0)
    ids = [*gen.encode_prompt("show the file notes"), *gen.tok.encode("ls"), gen.tok.eos_id]
    with torch.no_grad():
        logp = torch.log_softmax(gen.model(torch.tensor([ids])).logits[0], -1)
    body = len(gen.tok.encode("ls")) + 1
    by_hand = torch.stack([logp[i - 1, ids[i]] for i in range(len(ids) - body, len(ids))]).mean()
    assert batched[2] == pytest.approx(float(by_hand), abs=1e-5)


def test_weight_moves_from_the_model_order_to_the_retrieval_order(gen, retriever):
    pool = rr.candidates(gen, retriever, "show the notes file", k=3, proposed=["cat notes", "head notes", " "])
    retrieved = retriever.neighbours_scored("show the notes file", 3)
    assert [s.text for s in pool] == [c for c, _ in retrieved] + ["head notes"]  # deduplicated, blank dropped
    assert [s.similarity for s in pool] == [sim for _, sim in retrieved] + [0.0]
    assert retrieved[0][1] > retrieved[-1][1] > 0
    by_model = sorted(pool, key=lambda s: -s.logprob)
    assert rr.ranked(pool, 0.0) == [s.text for s in by_model]
    assert rr.ranked(pool, 1e3)[:3] == [c for c, _ in retrieved]


def test_choose_weight_takes_the_best_and_the_smallest_on_ties():
    pools = {
        "a": [rr.Scored("right", -2.0, 0.9), rr.Scored("wrong", -1.0, 0.1)],
        "b": [rr.Scored("right", -1.0, 0.2), rr.Scored("wrong", -3.0, 0.8)],
    }

    def hits(samples: dict[str, list[str]]) -> float:
        return sum(s[0] == "right" for s in samples.values()) / len(samples)

    weight, values = rr.choose_weight(pools, hits, weights=(0.0, 1.0, 2.0, 4.0, 1e3))
    # a needs weight > 1.25 (0.8 w > 1), b needs weight < 3.33 (0.6 w < 2)
    assert values == {0.0: 0.5, 1.0: 0.5, 2.0: 1.0, 4.0: 0.5, 1e3: 0.5} and weight == 2.0


def test_valid_first_is_a_stable_partition():
    from nl2code.generation.rerank import valid_first

    cands = ["a(", "b", "c(", "d", "e"]
    assert valid_first(cands, lambda c: "(" not in c) == ["b", "d", "e", "a(", "c("]
    assert valid_first(cands, lambda c: False) == cands and valid_first([], bool) == []


def test_execution_distinct_moves_behavioural_duplicates_back_and_keeps_every_candidate():
    from nl2code.generation.rerank import execution_distinct

    out = {"a": 1, "b": 2, "c": 2, "d": None, "e": 3, "f": 2, "g": 1}
    cands = list(out)
    got = execution_distinct(cands, out.get)
    assert got == ["a", "b", "e", "c", "f", "g", "d"]  # one per behaviour in order, then repeats, then failures
    assert sorted(got) == sorted(cands)
    assert execution_distinct(["x", "y", "z"], {"x": 1, "y": 2, "z": 3}.get) == ["x", "y", "z"]
    assert execution_distinct(["x", "y"], lambda c: None) == ["x", "y"] and execution_distinct([], bool) == []


def test_execution_utility_is_agreement_of_results_and_runs_each_program_once():
    from nl2code.generation.rerank import execution_utility, mbr

    runs = []
    out = {"a": 1, "a2": 1, "b": 2, "x": None}

    def result(c):
        runs.append(c)
        return out[c]

    u = execution_utility(result)
    assert u("a", "a2") == u("a2", "a") == 1.0 and u("a", "b") == 0.0 and u("x", "x") == 0.0 and u("b", "x") == 0.0
    assert mbr(["b", "x", "a", "x", "a2"], u) == ["a", "a2", "b", "x"]  # the behaviour given most, failures last
    assert sorted(runs) == ["a", "a2", "b", "x"]


def test_mbr_picks_the_candidate_the_samples_agree_with():
    """Under CMS the central command wins over the most frequent outlier's rivals; duplicates weigh as mass,
    empty candidates are dropped, ties keep the first-seen order, and explicit evidence replaces the pool."""
    from nl2code.eval.metrics.cms import cms

    samples = ["find . -name x -print0 | xargs -0 rm", "find . -name x", "find . -name x -type f", "ls -l", ""]
    ranked = rr.mbr(samples, cms)
    assert ranked[0] == "find . -name x" and "" not in ranked and len(ranked) == 4
    assert ranked[-1] == "ls -l"
    assert rr.mbr(["ls -l", "ls -l", "find . -name x"], cms)[0] == "ls -l"  # sampled twice: more mass
    assert rr.mbr(["a", "b"], lambda c, r: 0.0) == ["a", "b"]
    assert rr.mbr(["ls -l", "find . -name x"], cms, evidence=["find . -type f"])[0] == "find . -name x"


def test_mbr_set_covers_the_evidence_a_plain_ranking_leaves_out():
    """With ``k`` the first k maximise the summed best utility among them: the first is the plain MBR pick, the
    second covers the mass the first misses instead of a near-copy of it; past k the plain order follows, and
    the ranked set is the same."""
    same = {("a1", "a1"), ("a1", "a2"), ("a2", "a1"), ("a2", "a2"), ("b", "b")}

    def util(c, r):
        return 1.0 if (c, r) in same else 0.5 if {c, r} <= {"a1", "a2", "a3"} else 0.0

    samples = ["a1", "a1", "a2", "a3", "b", "b"]
    plain = rr.mbr(samples, util)
    assert plain == ["a1", "a2", "a3", "b"]  # the a-cluster holds 4 of 6 samples
    top = rr.mbr(samples, util, k=2)
    assert top[:2] == ["a1", "b"] and sorted(top) == sorted(plain)  # b gains 2, a2 only 0.5 (on a3)
    assert top[2:] == ["a2", "a3"]
    assert rr.mbr(samples, util, k=1) == plain and rr.mbr(["x"], util, k=5) == ["x"] and rr.mbr([], util, k=3) == []

    def expected_best(chosen):
        return sum(max(util(c, r) for c in chosen) for r in samples)

    assert expected_best(top[:2]) > expected_best(plain[:2])


def test_mixture_evidence_weighs_samples_and_retrieved_programs_by_share():
    """Each part uniform over its items with its share of the mass; a program in both parts adds up; share 0 is
    the samples alone, so MBR under it equals plain MBR; with a share the neighbours can tip a split vote."""
    from nl2code.eval.metrics.cms import cms

    samples = ["find . -name x", "find . -name y", "find . -type f -name x", "ls -l"]
    retrieved = ["find . -type f -name '*.x'", "ls -la"]
    ev = rr.mixture_evidence(samples, retrieved, 0.5)
    assert ev["find . -name x"] == 0.125 and ev["ls -la"] == 0.25 and sum(ev.values()) == pytest.approx(1.0)
    assert rr.mixture_evidence(["a", "a", "b"], ["a"], 0.25) == {"a": 0.75, "b": 0.25}
    assert rr.mixture_evidence(samples, retrieved, 0.0) == {t: 0.25 for t in samples}
    assert rr.mbr(samples, cms, rr.mixture_evidence(samples, retrieved, 0.0)) == rr.mbr(samples, cms)
    split = ["ls -l", "ls -l", "find . -name x"]  # the samples lean to ls; both neighbours are finds
    near = ["find . -name y", "find . -type f"]
    assert rr.mbr(split + near, cms, rr.mixture_evidence(split, near, 0.0))[0] == "ls -l"
    assert rr.mbr(split + near, cms, rr.mixture_evidence(split, near, 0.5))[0] == "find . -name x"
    with pytest.raises(ValueError, match="share"):
        rr.mixture_evidence(samples, retrieved, 1.5)
