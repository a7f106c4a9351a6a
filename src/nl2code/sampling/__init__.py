"""Decoding algorithms: turn a model plus token-id prompts into ranked token-id candidates.

Nothing here reads a run directory; the backends that do are in :mod:`nl2code.generation`.
"""

from nl2code.sampling.autoregressive import Sample, filter_logits, sample
from nl2code.sampling.beam import beam_search
from nl2code.sampling.diffusion import DiffusionSampler, DiffusionSamples, infill_template

__all__ = [
    "DiffusionSampler",
    "DiffusionSamples",
    "Sample",
    "beam_search",
    "filter_logits",
    "infill_template",
    "sample",
]
