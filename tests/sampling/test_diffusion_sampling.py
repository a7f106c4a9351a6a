"""CodeFusion sampler: determinism, step counts, ranking, rounding modes and infilling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bash_pairs import short_bash_pairs
from nl2code.data.collate import Example, pad_collate
from nl2code.data.tokenizer import CodeTokenizer
from nl2code.models.codefusion import CodeFusion, CodeFusionConfig, preset
from nl2code.objectives.diffusion import CodeFusionObjective
from nl2code.sampling.diffusion import DiffusionSampler, gumbel_argmax, infill_template

V, PAD, EOS = 40, 0, 1


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(**kw) -> CodeFusion:
    base = dict(
        vocab_size=V,
        d_model=32,
        n_heads=4,
        encoder_layers=1,
        denoiser_layers=1,
        decoder_layers=1,
        code_length=12,
        max_nl_length=8,
        num_timesteps=100,
        embed_dim=8,
    )
    base.update(kw)
    return CodeFusion(CodeFusionConfig(**base), generator=torch.Generator().manual_seed(0))


PROMPTS = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]


def test_deterministic_under_a_seed():
    sampler = DiffusionSampler(tiny_model(), num_steps=10, eos_id=EOS)
    a = sampler.generate(PROMPTS, 3, torch.Generator().manual_seed(7))
    b = sampler.generate(PROMPTS, 3, torch.Generator().manual_seed(7))
    c = sampler.generate(PROMPTS, 3, torch.Generator().manual_seed(8))
    assert a == b and a != c
    assert len(a.ids) == 3 and all(len(cands) == 3 for cands in a.ids)
    for cands, scores in zip(a.ids, a.scores):
        assert scores == sorted(scores, reverse=True)  # ranked best first
        assert all(s <= 0 for s in scores)  # mean log-probabilities
        for ids in cands:
            assert PAD not in ids and EOS not in ids and len(ids) <= 12


@pytest.mark.parametrize("steps", [1, 4, None])
@pytest.mark.parametrize("rounding", ["decoder", "grounding", "clamping", "decoder_clamp", "decoder_sample"])
@pytest.mark.parametrize("self_condition", [False, True])
def test_step_counts_and_rounding_modes_run(steps, rounding, self_condition):
    model = tiny_model(num_timesteps=20, self_condition=self_condition)
    sampler = DiffusionSampler(model, num_steps=steps, rounding=rounding, eta=0.0)
    out = sampler.generate(PROMPTS[:2], 2, torch.Generator().manual_seed(0))
    assert len(out.ids) == 2 and len(out.scores[0]) == 2
    assert sampler.scheduler.timesteps.numel() == (steps or 20)


def test_denoise_score_depends_on_the_candidate_and_its_prompt_only():
    """The ``denoise`` score: one noise draw per prompt and level, shared by its candidates (so equal candidates
    of a prompt score alike), reproducible under a seed; generate ranks by it; unknown scores are refused."""
    model = tiny_model(self_condition=True)
    sampler = DiffusionSampler(model, num_steps=4, eos_id=EOS, score="denoise")
    enc, mask, ctx = sampler._encode(PROMPTS[:2], 3)
    ids = torch.tensor([[5, 6, EOS] + [PAD] * 9, [5, 6, EOS] + [PAD] * 9, [7, EOS] + [PAD] * 10] * 2)
    a = sampler.denoise_logp(ids, enc, mask, torch.Generator().manual_seed(3), 3, ctx)
    b = sampler.denoise_logp(ids, enc, mask, torch.Generator().manual_seed(3), 3, ctx)
    assert a.shape == ids.shape and torch.equal(a, b) and (a <= 0).all()
    assert torch.equal(a[0], a[1]) and not torch.equal(a[0], a[2])
    assert not torch.equal(a[0], a[3])  # the same candidate under another prompt (and its own noise)
    out = sampler.generate(PROMPTS, 3, torch.Generator().manual_seed(7))
    assert all(s == sorted(s, reverse=True) for s in out.scores)
    final = DiffusionSampler(model, num_steps=4, eos_id=EOS).generate(PROMPTS, 3, torch.Generator().manual_seed(7))
    assert [sorted(c) for c in out.ids] == [sorted(c) for c in final.ids]  # the same draws, ranked another way
    with pytest.raises(ValueError, match="unknown score"):
        DiffusionSampler(model, score="best")
    with pytest.raises(ValueError, match="decoder"):
        DiffusionSampler(tiny_model(decoder_layers=0), score="denoise")


def test_unconditional_and_chunking_and_mode_restored():
    model = tiny_model().train()
    out = DiffusionSampler(model, num_steps=3).generate(None, 2, torch.Generator().manual_seed(0), num_prompts=3)
    assert len(out.ids) == 3 and model.training
    chunked = DiffusionSampler(model, num_steps=3, max_rows=2).generate(PROMPTS, 2, torch.Generator().manual_seed(0))
    assert len(chunked.ids) == 3
    with pytest.raises(ValueError, match="max_nl_length"):
        DiffusionSampler(model, num_steps=2).generate([list(range(9))], 1, torch.Generator())
    with pytest.raises(ValueError, match="rounding"):
        DiffusionSampler(model, rounding="argmax")


def test_steps_above_t_are_refused_when_the_sampler_is_built():
    model = tiny_model(num_timesteps=20)
    for steps in (21, 100_000):
        with pytest.raises(ValueError, match=r"steps must be in 1\.\.20 \(the model's diffusion T is 20\)"):
            DiffusionSampler(model, num_steps=steps)
    assert DiffusionSampler(model, num_steps=20).num_steps == 20


def test_oracle_denoiser_yields_its_tokens_cut_at_the_terminator(monkeypatch):
    """With a denoiser that always predicts L(target), every mode returns the target up to eos."""
    model = tiny_model()
    target = torch.tensor([7, 8, 9, 10, EOS, 11, PAD, PAD, PAD, PAD, PAD, PAD])
    monkeypatch.setattr(model, "denoise", lambda x_t, t, enc, enc_mask=None, code_mask=None:
                        model.embed_code(target)[None].expand_as(x_t))  # fmt: skip
    for rounding in ("grounding", "clamping"):
        out = DiffusionSampler(model, num_steps=5, rounding=rounding, eos_id=EOS).generate(
            PROMPTS[:1], 2, torch.Generator().manual_seed(0)
        )
        assert out.ids == [[[7, 8, 9, 10], [7, 8, 9, 10]]]
    out = DiffusionSampler(model, num_steps=5, rounding="grounding").generate(PROMPTS[:1], 1, torch.Generator())
    assert out.ids == [[[7, 8, 9, 10, EOS, 11]]]  # without eos_id only pad terminates


def step_overrides(model: CodeFusion, rounding: str, monkeypatch) -> list[torch.Tensor]:
    """The ``x0_override`` the sampler hands the scheduler at each of 4 steps (one prompt, 2 candidates, seed 0)."""
    seen: list[torch.Tensor] = []
    real_step = DiffusionSampler(model).scheduler.step

    def spy(self, out, t, x, generator=None, x0_override=None):
        seen.append(x0_override)
        return real_step(out, t, x, generator=generator, x0_override=x0_override)

    sampler = DiffusionSampler(model, num_steps=4, rounding=rounding)
    monkeypatch.setattr(type(sampler.scheduler), "step", spy)
    sampler.generate(PROMPTS[:1], 2, torch.Generator().manual_seed(0))
    monkeypatch.undo()
    return seen


def on_embedding_rows(model: CodeFusion, x0: torch.Tensor) -> bool:
    """Whether every position of ``x0`` is exactly one of L's rows."""
    return bool((x0[..., None, :] == model.code_embed.weight).all(-1).any(-1).all())


def test_decoder_clamp_snaps_every_step_to_the_decoders_tokens(monkeypatch):
    """decoder_clamp hands the scheduler L(argmax H(D(x^_0))) at each step; the decoder mode does not."""
    model = tiny_model()
    for rounding, snapped in (("decoder_clamp", True), ("decoder", False)):
        seen = step_overrides(model, rounding, monkeypatch)
        assert len(seen) == 4
        on_rows = [on_embedding_rows(model, x0) for x0 in seen]
        assert all(on_rows) if snapped else not any(on_rows)
    with pytest.raises(ValueError, match="decoder"):
        DiffusionSampler(tiny_model(decoder_layers=0), rounding="decoder_clamp")


def test_gumbel_argmax_draws_from_the_softmax():
    """Each position's draws follow softmax(scores): the frequencies of 20,000 draws of a 3-token distribution
    are within 0.015 of its probabilities, and a seed repeats them."""
    probs = torch.tensor([0.6, 0.3, 0.1])
    scores = probs.log().expand(20_000, 1, 3)
    ids = gumbel_argmax(scores, torch.Generator().manual_seed(0))
    assert ids.shape == (20_000, 1)
    freq = torch.bincount(ids.flatten(), minlength=3).float() / ids.numel()
    assert torch.allclose(freq, probs, atol=0.015), freq
    assert torch.equal(ids, gumbel_argmax(scores, torch.Generator().manual_seed(0)))


def test_decoder_sample_draws_every_step_but_the_last(monkeypatch):
    """decoder_sample hands the scheduler L(tokens drawn from D+H) at every step but the last (an argmax there:
    one step is decoder_clamp exactly), and a seed repeats the draws."""
    model = tiny_model()
    drawn = step_overrides(model, "decoder_sample", monkeypatch)
    argmax = step_overrides(model, "decoder_clamp", monkeypatch)
    assert len(drawn) == 4 and all(on_embedding_rows(model, x0) for x0 in drawn)
    # An untrained model's D+H is near uniform: a drawn step differs from the argmax step on most positions.
    assert not torch.equal(drawn[0], argmax[0])

    def run(rounding, steps=4, seed=0):
        sampler = DiffusionSampler(model, num_steps=steps, rounding=rounding)
        return sampler.generate(PROMPTS, 2, torch.Generator().manual_seed(seed))

    assert run("decoder_sample") == run("decoder_sample") != run("decoder_clamp")
    assert run("decoder_sample") != run("decoder_sample", seed=1)
    assert run("decoder_sample", steps=1) == run("decoder_clamp", steps=1)
    with pytest.raises(ValueError, match="decoder"):
        DiffusionSampler(tiny_model(decoder_layers=0), rounding="decoder_sample")


def test_self_conditioned_sampler_feeds_back_the_previous_estimate(monkeypatch):
    """Step 1 gets no estimate (zeros); every later step gets the previous step's x^_0."""
    model = tiny_model(self_condition=True)
    got: list[torch.Tensor | None] = []
    real = model.denoise

    def spy(x_t, t, enc, enc_mask=None, code_mask=None, x0_prev=None):
        got.append(x0_prev)
        return real(x_t, t, enc, enc_mask, code_mask, x0_prev=x0_prev)

    monkeypatch.setattr(model, "denoise", spy)
    DiffusionSampler(model, num_steps=3, eta=0.0).generate(PROMPTS[:1], 1, torch.Generator().manual_seed(0))
    assert got[0] is None and all(g is not None for g in got[1:]) and len(got) == 3
    assert not torch.equal(got[1], got[2])


@pytest.mark.parametrize("rounding", ["decoder", "decoder_clamp"])
def test_guidance_one_is_plain_and_zero_samples_the_empty_request(rounding):
    model = tiny_model(self_condition=True)

    def draws(prompts, **kw):
        sampler = DiffusionSampler(model, num_steps=4, eos_id=EOS, rounding=rounding, **kw)
        return sampler.generate(prompts, 2, torch.Generator().manual_seed(3))

    plain = draws(PROMPTS)
    assert draws(PROMPTS, guidance=1.0) == plain
    empty = draws([[PAD]] * len(PROMPTS))  # CodeFusion.null_request is one visible pad
    zero = draws(PROMPTS, guidance=0.0)
    assert zero.ids == empty.ids and np.allclose(zero.scores, empty.scores, atol=1e-5)
    assert draws(PROMPTS, guidance=3.0).scores != plain.scores
    with pytest.raises(ValueError, match="guidance"):
        DiffusionSampler(model, guidance=float("nan"))
    with pytest.raises(ValueError, match="decoder_guidance"):
        DiffusionSampler(model, decoder_guidance=-1.0)


def test_guided_output_extrapolates_from_the_empty_request():
    model = tiny_model().eval()
    sampler = DiffusionSampler(model, guidance=2.5)
    enc = model.encode(torch.tensor([[5, 6, 7]]), torch.ones(1, 3, dtype=torch.bool))
    null = sampler.null(enc)
    x, t = torch.randn(1, 12, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([50])
    cond, uncond = model.denoise(x, t, enc, None), model.denoise(x, t, null[0], null[1])
    torch.testing.assert_close(sampler._denoise_out(x, t, enc, None, null), uncond + 2.5 * (cond - uncond))
    assert DiffusionSampler(model).null(enc) is None and sampler.null(None) is None


def test_infill_template_layout():
    ids, known = infill_template([5, 6], [7], middle_length=3, code_length=10, pad_id=PAD, eos_id=EOS)
    assert ids.tolist() == [5, 6, PAD, PAD, PAD, 7, EOS, PAD, PAD, PAD]
    assert known.tolist() == [True, True, False, False, False, True, True, True, True, True]
    with pytest.raises(ValueError, match="fit"):
        infill_template([5] * 5, [6] * 5, middle_length=1, code_length=10, pad_id=PAD)
    with pytest.raises(ValueError, match="fit"):
        infill_template([5], [6], middle_length=0, code_length=10, pad_id=PAD)


def test_infill_keeps_prefix_and_suffix():
    sampler = DiffusionSampler(tiny_model(), num_steps=5, eos_id=EOS)
    prefix, suffix = [20, 21, 22], [30, 31]
    out = sampler.infill(
        [5, 6], prefix, suffix, middle_length=4, num_samples=3, generator=torch.Generator().manual_seed(0), eos_id=EOS
    )
    assert len(out.ids) == 1 and len(out.ids[0]) == 3
    for cand in out.ids[0]:
        assert cand[:3] == prefix and cand[-2:] == suffix and len(cand) <= 3 + 4 + 2
    again = sampler.infill([5, 6], prefix, suffix, 4, 3, torch.Generator().manual_seed(0), eos_id=EOS)
    assert again == out


# -- acceptance: a tiny model overfits 32 Bash pairs ------------------------------------------------
def bash_pairs(shared_data) -> list[tuple[str, str]]:
    """The first 32 train pairs (file order) with short code and a unique utterance."""
    pairs = short_bash_pairs(shared_data, 32)
    if len(pairs) < 32:
        pytest.fail("fewer than 32 short Bash pairs")
    return pairs


def test_tiny_model_overfits_32_bash_pairs(shared_data):
    """Three-term loss + reverse loop end to end: >= 90% exact match after 350 AdamW steps.

    The loop is a plain test-only AdamW loop (constant LR after a 20-step warmup). About 12-45 s on
    one busy CPU core; the result depends only on the seeds, not on timing.
    """
    pairs = bash_pairs(shared_data)
    tok = CodeTokenizer.train([text for pair in pairs for text in pair], vocab_size=300, min_frequency=1)
    nl_ids = [tok.encode(nl) for nl, _ in pairs]
    code_ids = [tok.encode(code) + [tok.eos_id] for _, code in pairs]
    examples = [Example(c, np.ones(len(c), dtype=bool), {"nl": n}) for c, n in zip(code_ids, nl_ids)]
    batch = pad_collate(examples, tok.pad_id)
    cfg = preset("codefusion-tiny", vocab_size=tok.vocab_size, pad_id=tok.pad_id, code_length=16, max_nl_length=40)
    gen = torch.Generator().manual_seed(0)
    model = CodeFusion(cfg, generator=gen)
    objective = CodeFusionObjective()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / 21))
    for _ in range(350):
        loss, _ = objective(model, batch, gen)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        warmup.step()

    # 20 strided steps instead of the 1200 the model was trained with; eta and rounding are the defaults.
    sampler = DiffusionSampler(model, num_steps=20, eos_id=tok.eos_id)
    out = sampler.generate(nl_ids, 1, torch.Generator().manual_seed(1))
    exact = sum(tok.decode(cands[0]) == code for cands, (_, code) in zip(out.ids, pairs))
    assert exact >= 29, f"exact match {exact}/32"

    # Infilling: hold the first and last token, regenerate the middle.
    long = [(n, c[:-1]) for n, c in zip(nl_ids, code_ids) if len(c) >= 4]
    recovered = 0
    for i, (nl, ids) in enumerate(long):
        res = sampler.infill(nl, ids[:1], ids[-1:], len(ids) - 2, 1, torch.Generator().manual_seed(i), tok.eos_id)
        assert res.ids[0][0][:1] == ids[:1] and res.ids[0][0][-1:] == ids[-1:]
        recovered += res.ids[0][0] == ids
    assert recovered >= 0.9 * len(long), f"infilled {recovered}/{len(long)}"
