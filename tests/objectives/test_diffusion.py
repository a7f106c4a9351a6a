"""CodeFusion objective: padding, the three loss terms, the three tasks and CPD masking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from head_equiv import assert_chunked_equals_plain

from nl2code.config import from_dict, registry_kinds
from nl2code.data.collate import Example, pad_collate
from nl2code.data.tokenizer import special_tokens
from nl2code.models.codefusion import CodeFusion, CodeFusionConfig
from nl2code.objectives.diffusion import (
    CodeFusionLossConfig,
    CodeFusionObjective,
    cpd_inputs,
    drop_requests,
    pad_code,
)

V, PAD, MASK = 48, 0, 2


def tiny_model(**kw) -> CodeFusion:
    base = dict(
        vocab_size=V,
        d_model=32,
        n_heads=4,
        encoder_layers=1,
        denoiser_layers=1,
        decoder_layers=1,
        code_length=10,
        max_nl_length=10,
        num_timesteps=200,
        embed_dim=8,
    )
    base.update(kw)
    return CodeFusion(CodeFusionConfig(**base), generator=torch.Generator().manual_seed(0))


def make_batch(seed: int = 0, with_groups: bool = False):
    rng = np.random.default_rng(seed)
    examples = []
    for n_code, n_nl in [(6, 4), (9, 7), (3, 9)]:
        code = rng.integers(4, V, n_code)
        extras = {"nl": rng.integers(4, V, n_nl)}
        if with_groups:
            g = np.zeros(n_code, dtype=np.int64)
            g[1:3], g[-1] = 1, 2
            extras["cpd_groups"] = g
        examples.append(Example(code, np.ones(n_code, dtype=bool), extras))
    return pad_collate(examples, pad_id=PAD)


def test_pad_code_fills_and_weights():
    ids = torch.tensor([[5, 6, 7], [8, 9, 0]])
    keep = torch.tensor([[True, True, True], [True, True, False]])
    padded, w = pad_code(ids, keep, 5, PAD, 0.25)
    assert padded.tolist() == [[5, 6, 7, 0, 0], [8, 9, 0, 0, 0]]
    assert w.tolist() == [[1, 1, 1, 0.25, 0.25], [1, 1, 0.25, 0.25, 0.25]]
    with pytest.raises(ValueError, match="code_length"):
        pad_code(ids, keep, 2, PAD, 1.0)


@pytest.mark.parametrize("task", ["finetune", "unconditional", "cpd"])
@pytest.mark.parametrize(
    "variant",
    [
        {}, {"prediction": "epsilon"}, {"decoder_layers": 0}, {"self_condition": True}, {"score_interpolation": True},
        {"copy_head": True},
    ],
)
def test_every_term_is_finite(task, variant):
    model = tiny_model(**variant)
    objective = CodeFusionObjective(CodeFusionLossConfig(task=task))
    loss, metrics = objective(model, make_batch(with_groups=task == "cpd"), torch.Generator().manual_seed(1))
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() > 0
    for name in ("denoise", "decoder", "ce", "acc", "embed_norm"):
        assert torch.isfinite(metrics[name]) and not metrics[name].requires_grad, name
    assert metrics["denoise"] > 0 and metrics["ce"] > 0
    if variant.get("decoder_layers") == 0:
        assert metrics["decoder"] == 0  # GENIE-style: no decoder term
    else:
        assert metrics["decoder"] > 0
    expected = metrics["denoise"] + metrics["decoder"] + metrics["ce"]
    torch.testing.assert_close(loss.detach(), expected)


def test_gradients_reach_the_right_components():
    model = tiny_model()
    loss, _ = CodeFusionObjective()(model, make_batch(), torch.Generator().manual_seed(1))
    loss.backward()
    for part in (model.nl_embed, model.encoder, model.code_embed, model.denoiser, model.decoder, model.time_embed):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    model.zero_grad(set_to_none=True)
    loss, _ = CodeFusionObjective(CodeFusionLossConfig(task="unconditional"))(
        model, make_batch(), torch.Generator().manual_seed(1)
    )
    loss.backward()
    assert all(p.grad is None for p in model.nl_embed.parameters())  # E(s) is replaced by noise


@pytest.mark.parametrize("variant", [{}, {"decoder_layers": 0}])
def test_chunked_head_loss_equals_the_plain_head(variant):
    def run(chunked):
        model = tiny_model(**variant)
        objective = CodeFusionObjective(CodeFusionLossConfig(chunked_head=chunked))
        return model, *objective(model, make_batch(), torch.Generator().manual_seed(5))

    assert_chunked_equals_plain(run)


def test_loss_is_deterministic_under_the_generator_and_weights_apply():
    model, batch = tiny_model(), make_batch()
    a, _ = CodeFusionObjective()(model, batch, torch.Generator().manual_seed(3))
    b, _ = CodeFusionObjective()(model, batch, torch.Generator().manual_seed(3))
    c, _ = CodeFusionObjective()(model, batch, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    only_ce, m = CodeFusionObjective(CodeFusionLossConfig(denoise_weight=0, decoder_weight=0))(
        model, batch, torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(only_ce.detach(), m["ce"])


def test_self_conditioning_pass_runs_on_half_the_batches_without_gradient(monkeypatch):
    """The first (estimate) pass is no-grad and its x^_0 reaches the second pass on ~half the batches."""
    model, batch = tiny_model(self_condition=True), make_batch()
    calls: list[tuple[bool, bool]] = []  # (grad enabled, got an estimate)
    real = model.denoise

    def spy(x_t, t, enc, enc_mask=None, code_mask=None, x0_prev=None):
        calls.append((torch.is_grad_enabled(), x0_prev is not None))
        if x0_prev is not None:
            assert not x0_prev.requires_grad
        return real(x_t, t, enc, enc_mask, code_mask, x0_prev=x0_prev)

    monkeypatch.setattr(model, "denoise", spy)
    gen = torch.Generator().manual_seed(0)
    with_estimate = 0
    for _ in range(40):
        calls.clear()
        loss, _ = CodeFusionObjective()(model, batch, gen)
        assert calls[-1][0] and torch.isfinite(loss)  # the scored pass has gradient
        if len(calls) == 2:
            assert calls[0] == (False, False) and calls[1] == (True, True)
            with_estimate += 1
        else:
            assert calls == [(True, False)]
    assert 10 <= with_estimate <= 30


def test_cpd_inputs_mask_only_the_groups():
    code = torch.tensor([[10, 11, 12, 13, 14], [20, 21, 22, 0, 0]])
    keep = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    groups = torch.tensor([[0, 1, 1, 0, 2], [3, 0, 0, 0, 0]])
    ids, mask = cpd_inputs(
        code,
        keep,
        groups,
        mask_id=MASK,
        pad_id=PAD,
        mask_rate=1.0,
        collapse=True,
        generator=torch.Generator().manual_seed(0),
    )
    assert ids.tolist() == [[10, MASK, 13, MASK], [MASK, 21, 22, PAD]]
    assert mask.tolist() == [[True] * 4, [True, True, True, False]]
    runs = [
        cpd_inputs(
            code,
            keep,
            groups,
            mask_id=MASK,
            pad_id=PAD,
            mask_rate=0.5,
            collapse=False,
            generator=torch.Generator().manual_seed(s),
        )[0]
        for s in (5, 5, 6, 7, 8)
    ]
    assert torch.equal(runs[0], runs[1])
    assert any(not torch.equal(runs[0], r) for r in runs[2:])  # a fresh mask per draw


def test_errors_and_registry():
    model = tiny_model()
    batch = make_batch()
    batch.extras.clear()
    with pytest.raises(ValueError, match="extras\\['nl'\\]"):
        CodeFusionObjective()(model, batch, torch.Generator())
    with pytest.raises(ValueError, match="cpd_groups"):
        CodeFusionObjective(CodeFusionLossConfig(task="cpd"))(model, batch, torch.Generator())
    with pytest.raises(TypeError, match="CodeFusion model"):
        CodeFusionObjective()(torch.nn.Linear(2, 2), batch, torch.Generator())
    assert registry_kinds("objective")["codefusion"] is CodeFusionLossConfig
    assert from_dict(CodeFusionLossConfig, {"task": "cpd", "cpd_mask_rate": 0.3}).cpd_mask_rate == 0.3
    assert special_tokens().index("<mask>") == CodeFusionLossConfig().mask_id
    assert special_tokens().index("<pad>") == CodeFusionConfig().pad_id
    with pytest.raises(ValueError):
        CodeFusionLossConfig(pad_weight=-1)


def test_dropped_requests_encode_as_the_empty_request_at_the_rate_asked():
    model = tiny_model().eval()
    batch = make_batch()
    ids, mask = batch.extras["nl"], batch.extras["nl_mask"]
    kept = drop_requests(ids, mask, 0.0, PAD, torch.Generator().manual_seed(0))
    assert torch.equal(kept[0], ids) and torch.equal(kept[1], mask)
    gone_ids, gone_mask = drop_requests(ids, mask, 0.999, PAD, torch.Generator().manual_seed(0))
    assert (gone_ids == PAD).all() and gone_mask.dtype == mask.dtype
    assert gone_mask.bool()[:, 0].all() and not gone_mask.bool()[:, 1:].any()
    null = model.encode(*model.null_request(len(ids), ids.device))
    torch.testing.assert_close(model.encode(gone_ids, gone_mask)[:, :1], null)  # the sampler's empty request
    many = torch.arange(4, 4004).view(-1, 1) % V
    dropped = drop_requests(many, torch.ones_like(many), 0.25, PAD, torch.Generator().manual_seed(1))[0] == PAD
    assert 0.2 < dropped.float().mean() < 0.3  # the ids hold no pad, so every pad was dropped
    loss = CodeFusionObjective(CodeFusionLossConfig(cond_dropout=0.5))(model.train(), batch, torch.Generator())[0]
    assert torch.isfinite(loss)
    for bad in ({"cond_dropout": 1.0}, {"cond_dropout": -0.1}, {"cond_dropout": 0.1, "task": "cpd"}):
        with pytest.raises(ValueError, match="cond_dropout"):
            CodeFusionLossConfig(**bad)


def test_one_batch_overfits():
    model = tiny_model()
    batch = make_batch()
    objective = CodeFusionObjective()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        loss, _ = objective(model, batch, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])


@pytest.mark.parametrize("task", ["finetune", "unconditional"])
def test_preview_samples_one_program_per_prompt(task):
    model = tiny_model().train()
    objective = CodeFusionObjective(CodeFusionLossConfig(task=task, preview_steps=3))
    prompts = [[5, 6, 7], list(range(4, 20))]  # the second is cut to max_nl_length
    outs = objective.preview(model, prompts, max_new_tokens=4, eos_id=1, generator=torch.Generator().manual_seed(0))
    assert len(outs) == 2 and all(len(o) <= 4 and 1 not in o and PAD not in o for o in outs)
    assert model.training  # the sampler restores the mode


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_clean_decode_rows_feed_the_decoder_the_gold_embeddings(fraction, monkeypatch):
    """clean_decode_fraction = 1: D reads L(y) on every row; 0: D reads the denoiser's x^_0."""
    model = tiny_model(x0_skip=True)
    seen = []
    real = model.decode
    monkeypatch.setattr(model, "decode", lambda x0, *a, **k: seen.append(x0) or real(x0, *a, **k))
    batch = make_batch()
    objective = CodeFusionObjective(CodeFusionLossConfig(clean_decode_fraction=fraction))
    loss, _ = objective(model, batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    gold = model.embed_code(pad_code(batch.input_ids, batch.attention_mask, 10, PAD, 1.0)[0])
    assert torch.equal(seen[0], gold) == (fraction == 1.0)
    with pytest.raises(ValueError, match="clean_decode_fraction"):
        CodeFusionLossConfig(clean_decode_fraction=1.5)


def test_score_interpolation_trains_the_scores_with_a_cross_entropy(monkeypatch):
    """Term 1 is the weighted CE of N's scores against y, and D reads their interpolation."""
    model, batch = tiny_model(score_interpolation=True), make_batch()
    seen = {}
    real_scores, real_decode = model.denoise_scores, model.decode
    monkeypatch.setattr(model, "denoise_scores", lambda *a, **k: seen.setdefault("s", real_scores(*a, **k)))

    def decode(x0, *a, **k):
        seen.setdefault("x0", x0)
        return real_decode(x0, *a, **k)

    monkeypatch.setattr(model, "decode", decode)
    _, metrics = CodeFusionObjective()(model, batch, torch.Generator().manual_seed(2))
    code, _ = pad_code(batch.input_ids, batch.attention_mask, 10, PAD, 1.0)
    ce = torch.nn.functional.cross_entropy(seen["s"].flatten(0, 1), code.flatten(), reduction="none").view(code.shape)
    torch.testing.assert_close(metrics["denoise"], ce.mean(1).mean().detach())
    torch.testing.assert_close(seen["x0"], model.interpolate(seen["s"]))


@pytest.mark.parametrize("variant", [{}, {"prediction": "epsilon"}, {"score_interpolation": True}])
def test_timestep_power_and_min_snr_weighting(variant):
    """Min-SNR weights are 1 at one end of gamma (-> 0 for an x0 loss, -> inf for an eps loss: the
    loss unweighted) and scale term 1 down at the other; the timestep power changes the draw."""
    model, batch = tiny_model(**variant), make_batch()

    def metrics(**cfg):
        return CodeFusionObjective(CodeFusionLossConfig(**cfg))(model, batch, torch.Generator().manual_seed(7))[1]

    off = metrics()
    neutral, small = (1e-12, 1e6) if variant.get("prediction") != "epsilon" else (1e12, 1e-6)
    torch.testing.assert_close(metrics(min_snr_gamma=neutral)["denoise"], off["denoise"])
    assert metrics(min_snr_gamma=small)["denoise"] < 0.01 * off["denoise"]
    assert metrics(timestep_power=3.0)["denoise"] != off["denoise"]
    for bad in (dict(timestep_power=0.0), dict(min_snr_gamma=-1.0)):
        with pytest.raises(ValueError):
            CodeFusionLossConfig(**bad)


def test_copy_head_learns_to_copy_symbols_never_written_in_training():
    """NL "COPY a b d" -> code "a b", or "OTHER a b d" -> "7": symbols 40-59 are read in training but never
    written. With the copy head the sampler writes them back from unseen requests (39 of 40 measured); the
    plain head never does (0 of 40)."""
    from nl2code.sampling.diffusion import DiffusionSampler

    copy_tok, other, seven, eos = 3, 5, 7, 1

    def batch(rng, n):
        rows = []
        for i in range(n):
            copy = i % 2 == 0
            a, b, d = (int(x) for x in rng.choice(range(10, 40 if copy else 60), size=3, replace=False))
            code = [a, b, eos] if copy else [seven, eos]
            nl = np.array([copy_tok if copy else other, a, b, d])
            rows.append(Example(np.array(code), np.ones(len(code), dtype=bool), {"nl": nl}))
        return pad_collate(rows, pad_id=PAD)

    rng = np.random.default_rng(123)
    prompts = [[copy_tok, *(int(x) for x in rng.choice(range(40, 60), size=3, replace=False))] for _ in range(40)]
    scores = {}
    for copy_head in (True, False):
        gen = torch.Generator().manual_seed(1)
        model = CodeFusion(
            CodeFusionConfig(vocab_size=64, d_model=32, n_heads=4, encoder_layers=1, denoiser_layers=2,
                             decoder_layers=1, embed_dim=8, code_length=4, max_nl_length=4, num_timesteps=200,
                             copy_head=copy_head),
            generator=gen,
        )  # fmt: skip
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        objective, data_rng = CodeFusionObjective(), np.random.default_rng(1)
        for _ in range(400):
            loss, _ = objective(model, batch(data_rng, 32), gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
        out = DiffusionSampler(model.eval(), num_steps=10, eos_id=eos).generate(prompts, 1, torch.Generator())
        scores[copy_head] = np.mean([c[0] == p[1:3] for c, p in zip(out.ids, prompts)])
    assert scores[True] >= 0.9 and scores[False] <= 0.1, scores
