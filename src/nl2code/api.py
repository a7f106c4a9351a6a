"""One generation API for every consumer: ``nl2code generate``/``infill``, the eval harness,
the server and the demo all call :func:`load_generator` and ``Generator.generate``.

The implementation lives in :mod:`nl2code.generation`; this module is its stable public face and
exports exactly what that package exports (``GenerationConfig``, ``Candidate``, ``Generator``,
``LoadedRun``, ``GenerationSpec``, ``RunError``, ``BACKENDS``, ``check_config``, ``load_run``,
``load_generator``, ``MIN_TEMPERATURE``).
"""

from nl2code.generation import *  # noqa: F403
from nl2code.generation import __all__  # noqa: F401
