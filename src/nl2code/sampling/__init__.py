"""Samplers: turn a trained model plus prompts into ranked token-id candidates."""

from nl2code.sampling.autoregressive import ARGenerator, Sample, filter_logits, sample
from nl2code.sampling.beam import beam_search
from nl2code.sampling.diffusion import DiffusionSampler, DiffusionSamples, infill_template

__all__ = [
    "ARGenerator",
    "DiffusionSampler",
    "DiffusionSamples",
    "Sample",
    "beam_search",
    "filter_logits",
    "infill_template",
    "sample",
]
