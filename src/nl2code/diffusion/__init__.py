"""Diffusion processes, kept out of the models: schedules and the Gaussian (embedding-space) scheduler."""

from nl2code.diffusion.gaussian import GaussianScheduler, StepOutput
from nl2code.diffusion.schedules import SCHEDULES, alphas_cumprod, make_betas, spaced_timesteps

__all__ = ["SCHEDULES", "GaussianScheduler", "StepOutput", "alphas_cumprod", "make_betas", "spaced_timesteps"]
