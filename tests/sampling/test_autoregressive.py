"""AR sampling: cache == no cache, batching, seeds, filters, stops, the ARGenerator, infill learning, MTPB."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nl2code.api import GenerationConfig, LoadedRun
from nl2code.config import from_dict
from nl2code.data.collate import Example, pad_collate
from nl2code.data.noising import InfillMixture, SpecialIds
from nl2code.data.tokenizer import CodeTokenizer
from nl2code.generation.autoregressive import ARGenerator, infill_mode_of
from nl2code.models import CodeGenConfig, build_model
from nl2code.objectives import CausalLMObjective
from nl2code.sampling.autoregressive import (
    cut_at_stop,
    filter_logits,
    next_tokens,
    sample,
    stop_checker,
)
from nl2code.train.config import RunConfig

V = 60
PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12], [13]]


def tiny(**kw):
    cfg = CodeGenConfig(**{"vocab_size": V, "d_model": 32, "n_layers": 2, "n_heads": 4, "max_seq_len": 48, **kw})
    return build_model(cfg, generator=torch.Generator().manual_seed(0)).eval()


def ids_of(groups):
    return [[s.ids for s in g] for g in groups]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("prefix_lm", [False, True])
def test_cache_equals_no_cache(temperature, prefix_lm):
    model = tiny(prefix_lm=prefix_lm)
    kw = dict(n=3, max_new_tokens=16, temperature=temperature, top_k=20, top_p=0.9, stop_ids=[1, 2], seed=4,
              prefix_lm=prefix_lm)
    cached, plain = sample(model, PROMPTS, **kw), sample(model, PROMPTS, use_cache=False, **kw)
    assert ids_of(cached) == ids_of(plain)
    for a, b in zip(sum(cached, []), sum(plain, [])):
        assert a.finish == b.finish and a.logprob == pytest.approx(b.logprob, abs=1e-4)


def test_batched_equals_unbatched_and_seeds_matter():
    model = tiny()
    kw = dict(n=2, max_new_tokens=12, temperature=1.0, seed=7)
    batched = sample(model, PROMPTS, **kw)
    alone = [sample(model, [p], prompt_offset=i, **kw)[0] for i, p in enumerate(PROMPTS)]
    assert ids_of(batched) == ids_of(alone)
    assert ids_of(sample(model, PROMPTS, **kw)) == ids_of(batched)  # same seed, same output
    assert ids_of(sample(model, PROMPTS, **{**kw, "seed": 8})) != ids_of(batched)
    assert batched[0][0].ids != batched[0][1].ids  # n samples of a prompt differ


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_guidance_one_is_plain_and_zero_continues_the_empty_request(temperature):
    model, null = tiny(), [[3]] * len(PROMPTS)

    def draws(prompts, temperature=temperature, **kw):
        return ids_of(sample(model, prompts, n=2, max_new_tokens=6, temperature=temperature, seed=4, **kw))

    plain = draws(PROMPTS)
    assert draws(PROMPTS, guidance=1.0, null_prompts=null) == plain
    assert draws(PROMPTS, guidance=0.0, null_prompts=null) == draws(null)  # rows keep their (seed, i, j) draws
    assert draws(PROMPTS, 1.0, guidance=4.0, null_prompts=null) != draws(PROMPTS, 1.0)
    with pytest.raises(ValueError, match="null prompts"):
        draws(PROMPTS, guidance=2.0, null_prompts=null[:1])


def test_guided_generator_needs_a_run_trained_with_cond_dropout(digit_tok):
    model = tiny(vocab_size=digit_tok.vocab_size)
    guided = GenerationConfig(n=2, temperature=1.0, max_new_tokens=4, guidance=2.0)
    with pytest.raises(ValueError, match="cond_dropout"):
        ARGenerator(loaded(model, digit_tok, fmt="nl_code")).generate(["12"], guided)
    gen = ARGenerator(loaded(model, digit_tok, {"kind": "causal_lm", "cond_dropout": 0.1}, fmt="nl_code"))
    assert [len(c) for c in gen.generate(["12", "3"], guided)] == [2, 2]
    with pytest.raises(ValueError, match="beam search"):
        gen.generate(["12"], GenerationConfig(n=2, num_beams=2, guidance=2.0))
    with pytest.raises(ValueError, match="infilling"):
        gen.infill("1", "2", guided)
    for bad in ({"guidance": float("nan")}, {"guidance": -1.0}, {"decoder_guidance": float("inf")}):
        with pytest.raises(ValueError, match="guidance must be a finite number"):
            GenerationConfig(**bad)


def test_dropped_requests_keep_the_code_and_its_loss_mask(digit_tok):
    from nl2code.objectives.autoregressive import CausalLMConfig, DropRequest

    sep = digit_tok.sep_id
    ex = Example(np.array([7, 8, sep, 9, 10, 1]), np.array([0, 0, 0, 1, 1, 1], bool))
    drop = CausalLMObjective(CausalLMConfig(cond_dropout=0.5)).example_transform(digit_tok, from_dict(
        RunConfig, {"model": {"kind": "codegen", "vocab_size": 1}, "data": {"format": "nl_code"}}).data)
    assert isinstance(drop, DropRequest)
    outs = [drop(ex, np.random.default_rng([0, 0, i])) for i in range(400)]
    gone = [o for o in outs if len(o.input_ids) < 6]
    assert 150 < len(gone) < 250 and all(o.input_ids.tolist() == [sep, 9, 10, 1] for o in gone)
    assert all(o.loss_mask.tolist() == [0, 1, 1, 1] for o in gone)
    with pytest.raises(ValueError, match="generator"):
        drop(ex)
    with pytest.raises(ValueError, match="retrieval_k"):
        CausalLMConfig(cond_dropout=0.1, retrieval_k=1)


def test_filter_logits_top_k_is_tie_safe_and_top_p_minimal():
    logits = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0]])
    kept = torch.isfinite(filter_logits(logits, top_k=2))
    assert int(kept.sum()) == 2 and not kept[0, 0] and not kept[0, 4]  # exactly k despite the 3-way tie
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(filter_logits(probs.log(), top_p=0.8))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 + 0.3 reaches 0.8
    assert torch.isfinite(filter_logits(probs.log(), top_p=0.01)).sum() == 1  # the top token always stays


def test_sampling_follows_the_tempered_distribution():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0]).repeat(4000, 1)
    gens = [torch.Generator().manual_seed(i) for i in range(4000)]
    for t in (1.0, 0.5):
        draws = next_tokens(logits, gens, temperature=t)
        freq = torch.bincount(draws, minlength=4).float() / 4000
        torch.testing.assert_close(freq, (logits[0] / t).softmax(-1), atol=0.03, rtol=0)


def test_stop_strings():
    decode = lambda ids: "".join(chr(96 + i) for i in ids)  # noqa: E731  1 -> "a", 2 -> "b", ...
    check = stop_checker(decode, ["ba", "zz"])
    assert check([3, 2, 1]) and not check([1, 2, 3])
    assert stop_checker(decode, [""]) is None
    assert cut_at_stop("x = 1\ndef f", ["\ndef", "\nclass"]) == "x = 1"
    model = tiny()
    out = sample(model, PROMPTS[:1], n=4, max_new_tokens=20, temperature=1.0, stop=lambda ids: len(ids) >= 3)
    assert all(len(s.ids) == 3 and s.finish == "stop_string" for s in out[0])


# -- the api backend -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digit_tok() -> CodeTokenizer:
    # the smallest vocabulary (bytes + specials): every digit is one token
    return CodeTokenizer.train(["0123456789"], vocab_size=256 + 24)


def loaded(model, tok, objective: dict | None = None, fmt: str = "code") -> LoadedRun:
    cfg = from_dict(RunConfig, {"model": {"kind": "codegen", "vocab_size": model.cfg.vocab_size, "d_model": 32,
                                          "n_heads": 4}, "objective": objective or {"kind": "causal_lm"},
                                "data": {"format": fmt}})
    return LoadedRun(Path("."), cfg, model, tok, torch.device("cpu"))


def counting_file(rng: np.random.Generator) -> str:
    start, length = int(rng.integers(0, 5)), int(rng.integers(5, 6))
    return "".join(str(start + i) for i in range(length))


def test_a_tiny_model_learns_to_infill(digit_tok):
    """Span-corruption training on counting strings ("23456"): infill recovers the masked middle."""
    torch.manual_seed(0)
    tok = digit_tok
    model = build_model(CodeGenConfig(vocab_size=tok.vocab_size, d_model=64, n_layers=2, n_heads=4, max_seq_len=24),
                        generator=torch.Generator().manual_seed(0))
    mix = InfillMixture(SpecialIds.from_tokenizer(tok), tok.encode, tok.decode, max_len=24, span_rate=1.0,
                        mask_ratio=(0.2, 0.6), mean_span_len=3, max_spans=1)
    rng = np.random.default_rng(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    objective = CausalLMObjective()
    model.train()
    for _ in range(250):
        rows = []
        for _ in range(32):
            ids = [*tok.encode(counting_file(rng)), tok.eos_id]
            rows.append(mix(Example(np.array(ids), np.ones(len(ids), bool)), rng))
        loss, _ = objective(model, pad_collate(rows, tok.pad_id), torch.Generator())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    gen = ARGenerator(loaded(model, tok, {"kind": "codegen2_mixture", "fim_rate": 0.0}))
    assert gen.infill_mode == "codegen2"
    cases = [("12", "56"), ("0", "34"), ("345", "8"), ("4", "78"), ("2", "5"), ("01", "4")]
    cfg = GenerationConfig(max_new_tokens=6)
    answers = [gen.infill(p, s, cfg)[0].text for p, s in cases]
    expected = ["34", "12", "67", "56", "34", "23"]
    assert sum(a == e for a, e in zip(answers, expected)) >= 5, answers


def test_generator_formats_prompts_ranks_and_stops(digit_tok):
    model = tiny(vocab_size=digit_tok.vocab_size)
    nl = ARGenerator(loaded(model, digit_tok, fmt="nl_code"))
    code = ARGenerator(loaded(model, digit_tok, fmt="code"))
    assert nl.encode_prompt("12") == [*digit_tok.encode("12"), digit_tok.sep_id]
    t = digit_tok
    assert nl.infill_prompt("1", "3", "psm")[0] == [t.sep_id, t.fim_prefix_id, *t.encode("1"), t.fim_suffix_id,
                                                    *t.encode("3"), t.fim_middle_id]
    assert code.infill_prompt("1", "3", "spm") == ([t.fim_prefix_id, t.fim_suffix_id, *t.encode("3"), t.fim_middle_id,
                                                     *t.encode("1")], [t.eos_id])
    assert code.encode_prompt("12") == digit_tok.encode("12")
    out = nl.generate(["1", "22"], GenerationConfig(n=3, temperature=1.0, max_new_tokens=8, seed=1))
    assert [len(c) for c in out] == [3, 3]
    assert all(a.score >= b.score for c in out for a, b in zip(c, c[1:]))  # best first
    beams = nl.generate(["1"], GenerationConfig(n=3, max_new_tokens=8))[0]  # greedy n>1 = beam search
    assert len({c.text for c in beams}) == 3
    stopped = code.generate(["1"], GenerationConfig(n=2, temperature=1.0, max_new_tokens=20, stop=("5",)))[0]
    assert all("5" not in c.text for c in stopped)
    with pytest.raises(ValueError, match="not trained to infill"):
        code.infill("1", "2", GenerationConfig())
    assert code.infill("1", "2", GenerationConfig(max_new_tokens=3), mode="psm")[0].extra["tokens"] <= 3
    assert infill_mode_of(loaded(model, digit_tok, {"kind": "codegen2_mixture", "span_rate": 0.0}).config) == "psm"


def test_mtpb_samples_match_the_harness_format(digit_tok):
    from nl2code.data.sources import load_source
    from nl2code.eval.tasks.mtpb import TASK
    from nl2code.generation.mtpb import mtpb_samples

    fixture = Path(__file__).resolve().parents[1] / "eval" / "fixtures" / "mtpb_mini.jsonl"
    problems = load_source("mtpb", fixture).records[:2]
    gen = ARGenerator(loaded(tiny(vocab_size=digit_tok.vocab_size), digit_tok))
    rows = list(mtpb_samples(gen, problems, GenerationConfig(n=2, temperature=1.0, max_new_tokens=4), [0, 3]))
    assert len(rows) == 2 * 2 * 2
    parsed = TASK.parse({p.task_id: p for p in problems}, [(i, json.loads(json.dumps(r))) for i, r in enumerate(rows)],
                        "<mem>")
    assert [(t, c) for t, c, _ in parsed][:2] == [(problems[0].task_id, 0), (problems[0].task_id, 0)]


def test_valid_stop_accepts_only_code_that_parses_up_to_the_stop_string(digit_tok):
    gen = ARGenerator(loaded(tiny(vocab_size=digit_tok.vocab_size), digit_tok))
    accept = gen._acceptor(GenerationConfig(valid_stop="python", stop=("\n",)))
    assert accept(digit_tok.encode("1 + 2")) and accept(digit_tok.encode("1 + 2\nfoo("))
    assert not accept(digit_tok.encode("(1 + 2")) and not accept(digit_tok.encode(""))
    assert gen._acceptor(GenerationConfig()) is None
    with pytest.raises(ValueError, match="valid_stop must be one of"):
        gen.generate(["1"], GenerationConfig(valid_stop="cobol"))
    with pytest.raises(ValueError, match="beam search or greedy"):
        GenerationConfig(valid_stop="python", temperature=1.0)
    # A model that wants to stop at once: plain search ends on the empty text, which does not parse;
    # with valid stop every candidate still ends at the stop token, but only once its text parses.
    eager = tiny(vocab_size=digit_tok.vocab_size)

    def prefer_eos(mod, inp, out):
        out.logits[..., digit_tok.eos_id] += 6.0

    eager.register_forward_hook(prefer_eos)
    gen = ARGenerator(loaded(eager, digit_tok))
    plain = GenerationConfig(max_new_tokens=6, n=2, num_beams=3)
    assert [c[0].text for c in gen.generate(["1", "2"], plain)] == ["", ""]
    greedy = gen.generate(["1", "2"], GenerationConfig(valid_stop="python", max_new_tokens=6))
    beams = gen.generate(["1", "2"], GenerationConfig(valid_stop="python", max_new_tokens=6, n=2, num_beams=3))
    for cand in [c for group in greedy + beams for c in group]:
        assert cand.extra["finish"] == "stop_token" and cand.text and accept(digit_tok.encode(cand.text))
