"""Generation from a trained run: one backend per model family behind one interface.

:mod:`~nl2code.generation.types` holds what every backend shares, :mod:`~nl2code.generation.spec`
how a run is prompted, :mod:`~nl2code.generation.load` loads a run directory and picks the backend
(``BACKENDS``). The decoding algorithms themselves are in :mod:`nl2code.sampling`.
"""

from nl2code.generation.load import BACKENDS, load_ensemble, load_generator, load_run
from nl2code.generation.spec import GenerationSpec
from nl2code.generation.types import (
    MIN_TEMPERATURE,
    Candidate,
    GenerationConfig,
    Generator,
    LoadedRun,
    RunError,
    check_config,
)

__all__ = [
    "BACKENDS",
    "MIN_TEMPERATURE",
    "Candidate",
    "GenerationConfig",
    "GenerationSpec",
    "Generator",
    "LoadedRun",
    "RunError",
    "check_config",
    "load_ensemble",
    "load_generator",
    "load_run",
]
