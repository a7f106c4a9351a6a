"""GaussianScheduler: forward noising statistics, parameterisation round trips and reverse steps."""

from __future__ import annotations

import pytest
import torch

from nl2code.diffusion import GaussianScheduler


def test_add_noise_statistics(generator):
    sched = GaussianScheduler(1200, "sqrt")
    x0 = torch.full((4000, 8), 2.0)
    t = torch.tensor([0, 300, 600, 1199]).repeat_interleave(1000)
    noise = torch.randn(x0.shape, generator=generator)
    x_t = sched.add_noise(x0, noise, t)
    for i, step in enumerate([0, 300, 600, 1199]):
        ab = sched.alphas_cumprod[step].item()
        chunk = x_t[i * 1000 : (i + 1) * 1000]
        assert chunk.mean().item() == pytest.approx(2.0 * ab**0.5, abs=0.05)
        assert chunk.var().item() == pytest.approx(1 - ab, rel=0.06, abs=2e-3)


def test_add_noise_shapes_and_ranges(generator):
    sched = GaussianScheduler(100)
    x0 = torch.randn(3, 5, 4, generator=generator)
    with pytest.raises(ValueError, match="noise shape"):
        sched.add_noise(x0, torch.randn(3, 5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        sched.add_noise(x0, torch.randn_like(x0), torch.tensor([0, 1, 100]))
    t = sched.sample_timesteps(1000, generator)
    assert t.dtype == torch.long and int(t.min()) >= 0 and int(t.max()) <= 99
    assert len(set(t.tolist())) > 80  # uniform: most timesteps hit


@pytest.mark.parametrize("prediction", ["sample", "epsilon"])
def test_parameterisations_round_trip(prediction, generator):
    sched = GaussianScheduler(1200, "sqrt", prediction_type=prediction)
    x0 = torch.randn(6, 7, 3, generator=generator, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    t = torch.tensor([0, 10, 200, 600, 1000, 1150])
    x_t = sched.add_noise(x0, eps, t)
    out = x0 if prediction == "sample" else eps
    torch.testing.assert_close(sched.to_x0(out, x_t, t), x0)
    torch.testing.assert_close(sched.to_epsilon(x0, x_t, t), eps)


def test_eta_one_full_steps_is_ddpm_posterior(generator):
    """With every timestep and eta = 1 the step is DDPM's q(x_{t-1} | x_t, x_0) sample."""
    sched = GaussianScheduler(50, "sqrt", eta=1.0)
    sched.set_timesteps(50)
    x0 = torch.randn(2, 4, 3, generator=generator)
    x_t = torch.randn(2, 4, 3, generator=generator)
    t = 20
    ab, ab_prev = sched.alphas_cumprod[t], sched.alphas_cumprod[t - 1]
    beta = 1 - ab / ab_prev
    mean = (ab_prev.sqrt() * beta / (1 - ab)) * x0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)) * x_t
    var = beta * (1 - ab_prev) / (1 - ab)
    out = sched.step(x0, t, x_t, generator=torch.Generator().manual_seed(5))
    z = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(out.prev_sample, (mean + var.sqrt() * z).float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.pred_original_sample, x0)


@pytest.mark.parametrize("prediction", ["sample", "epsilon"])
@pytest.mark.parametrize("steps", [1, 7, 1200])
def test_oracle_model_recovers_x0_with_any_number_of_steps(prediction, steps, generator):
    """Deterministic DDIM with a perfect denoiser lands exactly on x_0, also with fewer steps."""
    sched = GaussianScheduler(1200, "sqrt", prediction_type=prediction, eta=0.0)
    x0 = torch.randn(2, 5, 4, generator=generator, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    timesteps = sched.set_timesteps(steps)
    x = sched.add_noise(x0, eps, torch.full((2,), int(timesteps[0])))
    for t in timesteps.tolist():
        out = x0 if prediction == "sample" else sched.to_epsilon(x0, x, t)
        x = sched.step(out, t, x).prev_sample
    torch.testing.assert_close(x, x0, rtol=1e-6, atol=1e-6)


def test_step_is_deterministic_under_a_seed_and_checks_schedule(generator):
    sched = GaussianScheduler(100, "cosine", eta=1.0)
    sched.set_timesteps(10)
    x = torch.randn(2, 3, generator=generator)
    out = torch.randn(2, 3, generator=generator)
    a = sched.step(out, 99, x, generator=torch.Generator().manual_seed(1)).prev_sample
    b = sched.step(out, 99, x, generator=torch.Generator().manual_seed(1)).prev_sample
    c = sched.step(out, 99, x, generator=torch.Generator().manual_seed(2)).prev_sample
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert sched.previous_timestep(99) == 88 and sched.previous_timestep(0) == -1
    with pytest.raises(ValueError, match="not in the inference schedule"):
        sched.step(out, 50, x)
    with pytest.raises(ValueError):
        GaussianScheduler(10, prediction_type="v")


@pytest.mark.parametrize("prediction", ["sample", "epsilon"])
def test_x0_estimate_is_bounded_at_the_last_timestep(prediction, generator):
    """Issue #18: with eps-prediction the sqrt schedule's last alpha_bar (3.7e-7) turned a unit eps
    error into an x^_0 of ~1,600; clipped, the estimate stays in the box of the embeddings."""
    sched = GaussianScheduler(1200, "sqrt", prediction_type=prediction)
    assert sched.alphas_cumprod[-1] < 1e-6
    x0 = torch.randn(4, 6, 8, generator=generator)
    t = torch.full((4,), 1199)
    x_t = sched.add_noise(x0, torch.randn(x0.shape, generator=generator), t)
    wrong = torch.randn(x0.shape, generator=generator)  # an imperfect network output
    bound = float(x0.abs().max())
    clipped = sched.to_x0(wrong, x_t, t, clip=bound)
    assert clipped.abs().max() <= bound
    if prediction == "epsilon":
        assert sched.to_x0(wrong, x_t, t).abs().max() > 100  # what the clip prevents
    default = GaussianScheduler(1200, "sqrt", prediction_type=prediction, clip_sample=bound)
    torch.testing.assert_close(default.to_x0(wrong, x_t, t), clipped)
    # Clipping never moves an estimate that is already inside the box.
    torch.testing.assert_close(sched.to_x0(x0 if prediction == "sample" else sched.to_epsilon(x0, x_t, t), x_t, t,
                                           clip=bound), x0, rtol=1e-3, atol=1e-3)  # fmt: skip


def test_default_reverse_step_is_deterministic_ddim(generator):
    sched = GaussianScheduler(100)
    assert sched.eta == 0.0
    sched.set_timesteps(10)
    x0, x_t = torch.randn(2, 3, 4, generator=generator), torch.randn(2, 3, 4, generator=generator)
    a = sched.step(x0, 99, x_t, generator=torch.Generator().manual_seed(1)).prev_sample
    b = sched.step(x0, 99, x_t, generator=torch.Generator().manual_seed(2)).prev_sample
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("power", [0.5, 2.0])
def test_power_timesteps_follow_their_distribution(power, generator):
    """floor(T u^p): P(t < T/4) = (1/4)^(1/p), so p = 2 puts half the draws in the first quarter."""
    sched = GaussianScheduler(400)
    t = sched.sample_timesteps(20000, generator, power=power)
    assert int(t.min()) >= 0 and int(t.max()) <= 399
    share = (t < 100).float().mean().item()
    assert share == pytest.approx(0.25 ** (1 / power), abs=0.015)
    with pytest.raises(ValueError, match="power"):
        sched.sample_timesteps(4, generator, power=0.0)


def test_power_one_is_the_uniform_draw():
    sched = GaussianScheduler(100)
    a = sched.sample_timesteps(50, torch.Generator().manual_seed(3))
    b = sched.sample_timesteps(50, torch.Generator().manual_seed(3), power=1.0)
    assert torch.equal(a, b)
    assert torch.equal(a, torch.randint(0, 100, (50,), generator=torch.Generator().manual_seed(3)))  # the old draw


@pytest.mark.parametrize("prediction", ["sample", "epsilon"])
def test_min_snr_weights_cap_the_x0_error_weight_at_gamma(prediction):
    """Both forms weight the x_0 error by min(SNR, gamma) up to one constant (eps error = SNR x x_0 error)."""
    sched = GaussianScheduler(1200, "sqrt", prediction_type=prediction)
    t = torch.tensor([0, 50, 300, 600, 1199])
    snr = sched.alphas_cumprod[t] / (1 - sched.alphas_cumprod[t])
    torch.testing.assert_close(sched.snr(t), snr.float())
    w = sched.min_snr_weight(t, 5.0)
    x0_weight = w if prediction == "sample" else w * sched.snr(t)
    torch.testing.assert_close(x0_weight / x0_weight[0], snr.clamp(max=5.0).float() / 5.0)
    assert float(w.max()) <= 1.0 + 1e-6 and float(w.min()) > 0
    with pytest.raises(ValueError, match="gamma"):
        sched.min_snr_weight(t, 0.0)
