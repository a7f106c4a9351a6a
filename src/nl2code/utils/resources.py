"""Files shipped with the package, found the same way from a wheel and from a source checkout."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def config_dir(*parts: str) -> Path:
    """``configs/<parts...>``: the package's copy (``nl2code/configs``, a link to the checkout's
    ``configs/`` in a source tree, real files in a wheel), else the checkout's own."""
    packaged = Path(str(resources.files("nl2code") / "configs"))
    root = packaged if packaged.is_dir() else Path(__file__).resolve().parents[3] / "configs"
    return root.joinpath(*parts)


__all__ = ["config_dir"]
