"""HTTP serving of any run directory: an OpenAI-compatible ``/v1/completions`` and a web playground.

``create_app(generator, ...)`` builds the app over one :class:`nl2code.api.Generator`;
``nl2code serve --run DIR`` runs it with uvicorn.
"""

from nl2code.serve.app import create_app
from nl2code.serve.schema import Limits

__all__ = ["Limits", "create_app"]
