"""Noise schedules: closed-form values, monotonicity, caps and inference spacing."""

from __future__ import annotations

import math

import pytest
import torch

from nl2code.diffusion.schedules import (
    MAX_BETA,
    SCHEDULES,
    alphas_cumprod,
    cosine_alpha_bar,
    make_betas,
    spaced_timesteps,
    sqrt_alpha_bar,
)


def test_sqrt_schedule_matches_closed_form():
    T, s = 1200, 1e-4
    ab = alphas_cumprod("sqrt", T)
    # The cumulative product telescopes to alpha_bar((t+1)/T) / alpha_bar(0) until the beta cap bites.
    t = torch.arange(T - 1, dtype=torch.float64)
    expected = (1 - torch.sqrt((t + 1) / T + s)) / (1 - math.sqrt(s))
    torch.testing.assert_close(ab[:-1], expected, rtol=1e-9, atol=1e-12)
    assert sqrt_alpha_bar(0.5) == pytest.approx(1 - math.sqrt(0.5 + 1e-4))
    # Spot values: about a third of the signal is left halfway, almost none at the end.
    assert ab[0].item() == pytest.approx(0.97924, abs=1e-5)
    assert ab[599].item() == pytest.approx(0.29578, abs=1e-5)
    assert ab[-1].item() < 1e-6


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("T", [10, 1200, 2000])
def test_schedules_are_strictly_decreasing_in_unit_interval(name, T):
    ab = alphas_cumprod(name, T)
    betas = make_betas(name, T)
    assert ab.dtype == torch.float64 and ab.shape == (T,)
    assert bool((ab > 0).all()) and bool((ab < 1).all())
    assert bool((ab[1:] < ab[:-1]).all())
    assert bool((betas > 0).all()) and bool((betas <= MAX_BETA).all())


def test_cosine_and_linear_values():
    T = 1000
    ab = alphas_cumprod("cosine", T)
    t = torch.arange(T - 1, dtype=torch.float64)
    expected = torch.tensor([cosine_alpha_bar((i + 1) / T) for i in t.tolist()], dtype=torch.float64)
    torch.testing.assert_close(ab[:-1], expected / cosine_alpha_bar(0.0), rtol=1e-9, atol=1e-12)
    betas = make_betas("linear", T)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    # Rescaled for other T so the final signal level is similar.
    final_1000 = alphas_cumprod("linear", 1000)[-1].item()
    assert alphas_cumprod("linear", 2000)[-1].item() == pytest.approx(final_1000, rel=0.5)


def test_unknown_schedule_and_bad_sizes():
    with pytest.raises(ValueError, match="unknown noise schedule"):
        make_betas("quadratic", 10)
    with pytest.raises(ValueError):
        make_betas("sqrt", 0)


def test_spaced_timesteps():
    assert spaced_timesteps(1200, 1200).tolist() == list(range(1199, -1, -1))
    steps = spaced_timesteps(1200, 10)
    assert steps[0].item() == 1199 and steps[-1].item() == 0 and len(steps) == 10
    gaps = (steps[:-1] - steps[1:]).tolist()
    assert max(gaps) - min(gaps) <= 1  # evenly spaced up to rounding
    assert len(set(spaced_timesteps(1200, 1199).tolist())) == 1199  # no duplicates
    assert spaced_timesteps(50, 1).tolist() == [49]
    for bad in (0, 1201):
        with pytest.raises(ValueError):
            spaced_timesteps(1200, bad)


def test_every_schedule_name_has_betas():
    from typing import get_args

    from nl2code.diffusion.schedules import BETAS, SCHEDULES, ScheduleName

    assert tuple(BETAS) == SCHEDULES == get_args(ScheduleName)
