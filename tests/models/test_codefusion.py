"""CodeFusion network: shapes, masking, component wiring, presets and parameter counts."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nl2code.config import ConfigError, from_dict, registry_kinds, to_dict
from nl2code.models.codefusion import (
    PRESETS,
    CodeFusion,
    CodeFusionConfig,
    parameter_counts,
    preset,
    preset_parameter_counts,
    scheduler_for,
)
from nl2code.models.outputs import ModelOutput

V = 64


def tiny(**kw) -> CodeFusionConfig:
    base = dict(
        vocab_size=V,
        d_model=32,
        n_heads=4,
        encoder_layers=1,
        denoiser_layers=2,
        decoder_layers=1,
        code_length=12,
        max_nl_length=10,
        num_timesteps=100,
    )
    base.update(kw)
    return CodeFusionConfig(**base)


@pytest.fixture
def model(generator) -> CodeFusion:
    return CodeFusion(tiny(), generator=generator).eval()


def test_component_shapes(model, generator):
    nl = torch.randint(3, V, (2, 7), generator=generator)
    enc = model.encode(nl, torch.ones(2, 7, dtype=torch.bool))
    assert enc.shape == (2, 7, 32)
    x0 = model.embed_code(torch.randint(0, V, (2, 12), generator=generator))
    assert x0.shape == (2, 12, 32)
    out = model.denoise(x0, torch.tensor([0, 99]), enc)
    assert out.shape == x0.shape
    hidden = model.decode(out, enc)
    assert hidden.shape == x0.shape and model.logits(hidden).shape == (2, 12, V)
    full = model(x0, torch.tensor([5, 6]), enc)
    assert isinstance(full, ModelOutput) and full.logits.shape == (2, 12, V)
    assert torch.isfinite(full.logits).all()


def test_utterance_padding_is_invisible(model, generator):
    nl = torch.randint(3, V, (1, 5), generator=generator)
    padded = torch.cat([nl, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 4])
    enc_a = model.encode(nl, torch.ones(1, 5, dtype=torch.bool))
    enc_b = model.encode(padded, mask)
    torch.testing.assert_close(enc_a, enc_b[:, :5], rtol=1e-5, atol=1e-5)
    x_t = torch.randn(1, 12, 32, generator=generator)
    t = torch.tensor([40])
    torch.testing.assert_close(model.denoise(x_t, t, enc_a), model.denoise(x_t, t, enc_b, mask), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.decode(x_t, enc_a), model.decode(x_t, enc_b, mask), rtol=1e-5, atol=1e-5)


def test_outputs_depend_on_timestep_utterance_and_position(model, generator):
    enc = model.encode(torch.randint(3, V, (1, 6), generator=generator))
    enc2 = model.encode(torch.randint(3, V, (1, 6), generator=generator))
    x_t = torch.zeros(1, 12, 32)  # identical content everywhere: only positions tell them apart
    a = model.denoise(x_t, torch.tensor([3]), enc)
    assert not torch.allclose(a, model.denoise(x_t, torch.tensor([80]), enc))
    assert not torch.allclose(a, model.denoise(x_t, torch.tensor([3]), enc2))
    assert not torch.allclose(a[0, 0], a[0, 1])  # absolute positions break the symmetry
    assert not torch.allclose(model.decode(x_t, enc)[0, 0], model.decode(x_t, enc)[0, 1])


def test_init_is_deterministic_and_head_is_tied():
    a = CodeFusion(tiny(), generator=torch.Generator().manual_seed(3))
    b = CodeFusion(tiny(), generator=torch.Generator().manual_seed(3))
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert a.head.weight is a.code_embed.weight
    assert a.code_embed.weight.std().item() == pytest.approx(1.0, rel=0.1)  # unit scale, like the noise
    untied = CodeFusion(tiny(tie_head=False))
    assert untied.head.weight is not untied.code_embed.weight


def test_no_decoder_variant_and_nearest_tokens(generator):
    m = CodeFusion(tiny(decoder_layers=0), generator=generator)
    assert m.decoder is None
    x = torch.randn(2, 12, 32, generator=generator)
    assert torch.equal(m.decode(x, torch.randn(2, 3, 32)), x)
    ids = torch.randint(0, V, (2, 12), generator=generator)
    assert torch.equal(m.nearest_tokens(m.embed_code(ids) + 0.01 * x), ids)


def test_length_limits_and_epsilon_forward(model):
    with pytest.raises(ValueError, match="max_nl_length"):
        model.encode(torch.zeros(1, 11, dtype=torch.long))
    with pytest.raises(ValueError, match="code_length"):
        model.denoise(torch.zeros(1, 13, 32), torch.tensor([0]), torch.zeros(1, 2, 32))
    eps_model = CodeFusion(tiny(prediction="epsilon"))
    with pytest.raises(ValueError, match="prediction='sample'"):
        eps_model(torch.zeros(1, 12, 32), torch.tensor([0]), torch.zeros(1, 2, 32))


def test_config_validation_and_registry():
    assert registry_kinds("model")["codefusion"] is CodeFusionConfig
    cfg = from_dict(CodeFusionConfig, {"vocab_size": 100, "d_model": 64, "n_heads": 4, "schedule": "cosine"})
    assert cfg.schedule == "cosine" and cfg.diffusion_dim == 64 and cfg.ff_width == 256
    assert from_dict(CodeFusionConfig, {k: v for k, v in to_dict(cfg).items() if k != "kind"}) == cfg
    with pytest.raises(ConfigError, match="schedule"):
        from_dict(CodeFusionConfig, {"schedule": "quadratic"})
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(CodeFusionConfig, {"layers": 3})
    bad_configs = (
        {"d_model": 30, "n_heads": 4},
        {"denoiser_layers": 0},
        {"dropout": 1.0},
        {"vocab_size": 5, "pad_id": 5},
    )
    for bad in bad_configs:
        with pytest.raises(ValueError):
            CodeFusionConfig(**bad)
    with pytest.raises(ValueError, match="resolved"):
        CodeFusion(CodeFusionConfig())


def test_scheduler_matches_config():
    sched = scheduler_for(tiny(schedule="linear", prediction="epsilon"), eta=0.0)
    got = (sched.num_train_timesteps, sched.schedule, sched.prediction_type, sched.eta)
    assert got == (100, "linear", "epsilon", 0.0)


def test_self_conditioned_denoiser_reads_the_estimate(generator):
    cfg = CodeFusionConfig(vocab_size=50, d_model=32, n_heads=4, encoder_layers=1, denoiser_layers=1,
                           decoder_layers=1, code_length=8, max_nl_length=8, num_timesteps=100, embed_dim=8,
                           self_condition=True)  # fmt: skip
    model = CodeFusion(cfg, generator=generator)
    assert model.denoiser.proj_in.in_features == 16  # [x_t, x0_prev]
    x_t, enc, t = torch.randn(2, 8, 8), torch.randn(2, 3, 32), torch.tensor([5, 50])
    none = model.denoise(x_t, t, enc)
    torch.testing.assert_close(none, model.denoise(x_t, t, enc, x0_prev=torch.zeros_like(x_t)))
    assert not torch.allclose(none, model.denoise(x_t, t, enc, x0_prev=torch.randn_like(x_t)))
    plain = CodeFusion(dataclasses.replace(cfg, self_condition=False), generator=generator)
    torch.testing.assert_close(plain.denoise(x_t, t, enc), plain.denoise(x_t, t, enc, x0_prev=torch.randn_like(x_t)))


def test_presets_and_parameter_counts():
    paper = preset("codefusion-75m", vocab_size=32100)
    assert (paper.d_model, paper.encoder_layers, paper.denoiser_layers, paper.decoder_layers) == (512, 6, 10, 6)
    assert paper.code_length == 128 and paper.num_timesteps == 1200 and paper.schedule == "sqrt"
    with pytest.raises(ValueError, match="unknown CodeFusion preset"):
        preset("codefusion-1b")
    counts = preset_parameter_counts("codefusion-75m")
    d, e, ff, v = 512, 128, 2048, 32100
    block = 4 * d * d + 2 * d * ff + 2 * d  # self-attention + MLP + two norms
    fusion = block + 4 * d * d + d  # + cross-attention and its norm
    assert counts["encoder"] == v * d + 6 * block + d
    assert counts["code_embedding"] == v * e
    assert counts["head"] == v  # tied to L: only the bias is new
    stack_extra = (e * d + d) + (d * e + e) + 128 * d + d  # in/out projections, positions, final norm
    assert counts["decoder"] == 6 * fusion + stack_extra
    time_mlp = 128 * d + d + d * d + d
    assert counts["denoiser"] == 10 * fusion + stack_extra + time_mlp
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    # Budget check (codefusion.md §2 caveat): ~107M with CodeT5's vocabulary, ~68M for N + D alone.
    assert 100e6 < counts["total"] < 115e6 and 60e6 < counts["denoiser"] + counts["decoder"] < 75e6
    small = CodeFusion(preset("codefusion-tiny", vocab_size=300))
    assert parameter_counts(small)["total"] == small.num_parameters()
    for name in PRESETS:
        assert dataclasses.replace(PRESETS[name], vocab_size=10).vocab_size == 10


def test_x0_skip_copies_the_input_at_low_noise_and_not_at_high(generator):
    """x0_skip: x^_0 = c_skip(t) x_t + c_out(t) F. With F = 0 (zeroed output projection), the
    estimate at t = 0 rounds back to the input's tokens; at t = T-1 it carries no trace of x_t."""
    cfg = tiny(x0_skip=True, embed_dim=8, num_timesteps=1200)
    model = CodeFusion(cfg, generator=generator).eval()
    torch.nn.init.zeros_(model.denoiser.proj_out.weight)
    torch.nn.init.zeros_(model.denoiser.proj_out.bias)
    ids = torch.randint(3, V, (2, 12), generator=generator)
    x0 = model.embed_code(ids)
    enc = torch.randn(2, 3, 32, generator=generator)
    sched = scheduler_for(cfg)
    x_t = sched.add_noise(x0, torch.randn(x0.shape, generator=generator), torch.tensor([0, 0]))
    assert torch.equal(model.nearest_tokens(model.denoise(x_t, torch.tensor([0, 0]), enc)), ids)
    far = model.denoise(x_t, torch.tensor([1199, 1199]), enc)
    assert far.abs().max() < 1e-2
    with pytest.raises(ValueError, match="x0_skip"):
        tiny(x0_skip=True, prediction="epsilon")


@pytest.mark.parametrize("prediction", ["sample", "epsilon"])
def test_x0_estimate_stays_in_the_embedding_box_at_t_max(prediction, generator):
    cfg = tiny(prediction=prediction, num_timesteps=1200)
    model = CodeFusion(cfg, generator=generator).eval()
    x0 = model.embed_code(torch.randint(3, V, (2, 12), generator=generator))
    sched, t = scheduler_for(cfg), torch.tensor([1199, 1199])
    x_t = sched.add_noise(x0, torch.randn(x0.shape, generator=generator), t)
    est = sched.to_x0(model.denoise(x_t, t, model.encode(torch.randint(3, V, (2, 5)))), x_t, t, clip=model.x0_bound())
    assert est.abs().max() <= model.x0_bound() == float(model.code_embed.weight.detach().abs().max())


def test_distance_head_rounds_to_the_nearest_embedding(generator):
    model = CodeFusion(tiny(distance_head=True, embed_dim=8), generator=generator).eval()
    ids = torch.randint(0, V, (2, 12), generator=generator)
    x = model.embed_code(ids)
    assert torch.equal(model.logits(x).argmax(-1), ids)  # clean embeddings decode exactly
    h = torch.randn(2, 12, 8, generator=generator)
    w = model.code_embed.weight
    want = -torch.cdist(h, w[None].expand(2, -1, -1)).pow(2) + h.pow(2).sum(-1, keepdim=True) + model.head.bias
    torch.testing.assert_close(model.logits(h), want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="tie_head"):
        tiny(distance_head=True, tie_head=False)


def test_decoder_skip_is_residual_around_the_input(generator):
    model = CodeFusion(tiny(decoder_skip=True), generator=generator).eval()
    x0, enc = torch.randn(2, 12, 32, generator=generator), torch.randn(2, 3, 32, generator=generator)
    plain = CodeFusion(tiny(), generator=torch.Generator().manual_seed(0)).eval()
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(model.decode(x0, enc), x0 + plain.decode(x0, enc))


def test_score_interpolation_returns_the_expected_embedding(generator):
    """x^_0 = softmax(H(N(x_t))) @ L: a convex combination of L's rows (inside the embedding box)."""
    model = CodeFusion(tiny(score_interpolation=True, embed_dim=8, self_condition=True), generator=generator).eval()
    x_t, t = torch.randn(2, 12, 8, generator=generator), torch.tensor([5, 90])
    enc = torch.randn(2, 3, 32, generator=generator)
    scores = model.denoise_scores(x_t, t, enc)
    assert scores.shape == (2, 12, V)
    x0 = model.denoise(x_t, t, enc)
    torch.testing.assert_close(x0, scores.softmax(-1) @ model.code_embed.weight)
    assert x0.abs().max() <= model.x0_bound()
    # A peaked score vector returns that token's embedding, which rounds back to the token.
    ids = torch.randint(0, V, (2, 12), generator=generator)
    peaked = torch.nn.functional.one_hot(ids, V).float() * 100.0
    assert torch.equal(model.nearest_tokens(model.interpolate(peaked)), ids)
    with pytest.raises(ValueError, match="score_interpolation"):
        CodeFusion(tiny(), generator=generator).denoise_scores(x_t, t, enc)  # raises before reading x_t
    for bad in (dict(prediction="epsilon"), dict(x0_skip=True)):
        with pytest.raises(ValueError, match="score_interpolation"):
            tiny(score_interpolation=True, **bad)


def test_copy_head_mixes_a_pointer_over_the_utterance_into_the_head(generator):
    model = CodeFusion(tiny(copy_head=True, embed_dim=8), generator=generator).eval()
    x0, enc = torch.randn(2, 12, 8, generator=generator), torch.randn(2, 5, 32, generator=generator)
    ctx_ids = torch.tensor([[7, 7, 9, 3, 3], [11, 12, 12, 12, 4]])
    mask = torch.tensor([[True] * 3 + [False] * 2, [True] * 5])
    hidden, logp = model.decode_logits(x0, enc, mask, ctx_ids)
    torch.testing.assert_close(hidden, model.decode(x0, enc, mask))  # D_s is the plain decoder's
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(2, 12))  # a distribution over the vocabulary
    # gate shut on the head and a flat pointer: the mass sits on the visible utterance tokens by their counts
    torch.nn.init.zeros_(model.copy.gate.weight)
    torch.nn.init.constant_(model.copy.gate.bias, -30.0)
    torch.nn.init.zeros_(model.copy.query.weight)
    probs = model.decode_logits(x0, enc, mask, ctx_ids)[1].exp().detach()
    torch.testing.assert_close(probs[0, :, 7], torch.full((12,), 2 / 3))
    torch.testing.assert_close(probs[0, :, 9], torch.full((12,), 1 / 3))
    assert float(probs[0, :, 3].max()) < 1e-6  # masked positions are never copied
    torch.testing.assert_close(probs[1, :, 12], torch.full((12,), 3 / 5))
    # without context ids (unconditional pre-training) H alone scores
    torch.testing.assert_close(model.decode_logits(x0, enc, mask)[1], model.logits(hidden))
    assert parameter_counts(model)["total"] == model.num_parameters()
    with pytest.raises(ValueError, match="copy_head needs a decoder"):
        tiny(copy_head=True, decoder_layers=0)
