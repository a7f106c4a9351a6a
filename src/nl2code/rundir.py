"""The run directory: the one owner of its layout, and the only place its file names are spelled.

A finished run directory holds::

    config.yaml          the resolved run config (typed, see nl2code.train.config.RunConfig)
    tokenizer/           the run's tokenizer (nl2code.data.tokenizer.CodeTokenizer)
    model.safetensors    the final weights
    generation.json      how to prompt the model (nl2code.generation.spec.GenerationSpec); older
                         runs lack it and inference derives it from config.yaml
    checkpoints/step_N/  resumable checkpoints (nl2code.train.checkpoint), or per stage:
    stages/NAME/         checkpoints/ and model.safetensors of each stage of a multi-stage run
    adapter.safetensors, adapter.json   LoRA runs: the adapters beside the merged model
    best/                ``train.keep_best``: the weights of the best evaluation so far and best.json
                         (its step and held-out loss; nl2code.train.best), per run or stage directory

plus the training logs (``metrics.jsonl``, ``samples.jsonl``, ``tb/``; nl2code.train.runlog). Every
file is written atomically (nl2code.utils.io), so a killed writer leaves the old file or none.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nl2code import config as config_io
from nl2code.utils.io import atomic_path, atomic_write

if TYPE_CHECKING:
    from torch import nn

    from nl2code.data.tokenizer import CodeTokenizer

T = TypeVar("T")

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
GENERATION_FILE = "generation.json"
CHECKPOINTS_DIR = "checkpoints"
STAGES_DIR = "stages"
ADAPTER_FILE = "adapter.safetensors"
BEST_DIR = "best"
ADAPTER_INFO = "adapter.json"


# What a finished run holds, for help texts.
LAYOUT = f"{CONFIG_FILE}, {TOKENIZER_DIR}/, {WEIGHTS_FILE}"


class CheckpointError(RuntimeError):
    """A checkpoint or a run's weights file is missing, incomplete or corrupt; the message names the file."""


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write ``model``'s weights to ``path`` (safetensors, tied tensors once) atomically and durably."""
    from safetensors.torch import save_model

    with atomic_path(path, durable=True) as tmp:
        save_model(model, str(tmp), metadata={"format": "pt"})


def verify_weights(path: str | Path) -> None:
    """Check that ``path`` is a complete safetensors file, raising :class:`CheckpointError` naming it.

    safetensors checks the header against the file: the header must parse and its tensors must
    cover the data section exactly, so a truncated file, or one with bytes appended, fails here.
    (Bit flips inside tensor data need a recorded hash; only checkpoints have one.)
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            names = list(f.keys())
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt ({e})") from e
    if not names:
        raise CheckpointError(f"{path}: holds no tensors")


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory (or of one stage's directory, which has the same layout) and the
    reads and writes of its files."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    def __str__(self) -> str:
        return str(self.path)

    # -- paths ----------------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def weights_file(self) -> Path:
        return self.path / WEIGHTS_FILE

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / TOKENIZER_DIR

    @property
    def generation_file(self) -> Path:
        return self.path / GENERATION_FILE

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def adapter_file(self) -> Path:
        return self.path / ADAPTER_FILE

    @property
    def adapter_info_file(self) -> Path:
        return self.path / ADAPTER_INFO

    def stage(self, name: str) -> RunDir:
        """The directory of stage ``name`` of a multi-stage run."""
        return RunDir(self.path / STAGES_DIR / name)

    # -- state ----------------------------------------------------------------------------------
    def holds_run(self) -> bool:
        """Whether a run was started here (a fresh run must not write into it)."""
        names = (CONFIG_FILE, CHECKPOINTS_DIR, STAGES_DIR, WEIGHTS_FILE)
        return any((self.path / name).exists() for name in names)

    def has_weights(self) -> bool:
        return self.weights_file.is_file()

    def has_tokenizer(self) -> bool:
        from nl2code.data.tokenizer import CodeTokenizer

        return CodeTokenizer.saved_in(self.tokenizer_dir)

    def missing(self) -> list[Path]:
        """The files a finished run has and this directory lacks (empty: a finished run)."""
        from nl2code.data.tokenizer import CodeTokenizer

        files = (self.config_file, self.weights_file, CodeTokenizer.file_in(self.tokenizer_dir))
        return [p for p in files if not p.is_file()]

    # -- config ---------------------------------------------------------------------------------
    def load_config(self, cls: type[T]) -> T:
        """The saved run config, typed as ``cls`` (keys added since the run was written read as defaults)."""
        return config_io.load(cls, self.config_file)

    def read_config(self) -> dict:
        """The saved run config as a plain mapping (no type checks)."""
        return config_io.read_yaml(self.config_file)

    def save_config(self, cfg: Any) -> None:
        config_io.save(cfg, self.config_file)

    # -- tokenizer ------------------------------------------------------------------------------
    def load_tokenizer(self) -> CodeTokenizer:
        from nl2code.data.tokenizer import CodeTokenizer

        return CodeTokenizer.load(self.tokenizer_dir)

    def save_tokenizer(self, tok: CodeTokenizer) -> None:
        tok.save(self.tokenizer_dir)

    def copy_tokenizer_from(self, other: RunDir) -> None:
        """Copy another run's tokenizer folder into this one."""
        shutil.copytree(other.tokenizer_dir, self.tokenizer_dir, dirs_exist_ok=True)

    # -- weights --------------------------------------------------------------------------------
    def save_weights(self, model: nn.Module) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        save_weights(model, self.weights_file)
        return self.weights_file

    def write_weights(self, entries: list, metadata: dict[str, str]) -> Path:
        """Write the weights from lazy ``(name, make)`` entries (nl2code.hf.safetensors_io.Entry), one
        tensor in memory at a time, atomically and durably."""
        from nl2code.hf.safetensors_io import write_file

        self.path.mkdir(parents=True, exist_ok=True)
        write_file(self.weights_file, entries, metadata)
        return self.weights_file

    def verify_weights(self) -> None:
        verify_weights(self.weights_file)

    def load_weights(self, model: nn.Module, *, strict: bool = True, device: str = "cpu") -> Any:
        """Load the final weights into ``model``; safetensors' errors pass through unchanged."""
        from safetensors.torch import load_model

        return load_model(model, str(self.weights_file), strict=strict, device=device)

    def copy_weights_from(self, other: RunDir) -> None:
        """Replace this directory's weights by a copy of ``other``'s, atomically."""
        with atomic_path(self.weights_file) as tmp:
            shutil.copyfile(other.weights_file, tmp)

    # -- generation spec ------------------------------------------------------------------------
    def save_generation_spec(self, spec: dict[str, Any]) -> None:
        atomic_write(self.generation_file, json.dumps(spec, indent=1, sort_keys=True) + "\n")

    def load_generation_spec(self) -> dict[str, Any] | None:
        """The saved generation spec, or None for a run written before runs saved one."""
        if not self.generation_file.is_file():
            return None
        try:
            return json.loads(self.generation_file.read_text(encoding="utf-8"))
        except ValueError as e:
            raise config_io.ConfigError(f"{self.generation_file}: invalid JSON ({e})") from e


__all__ = [
    "ADAPTER_FILE",
    "ADAPTER_INFO",
    "CHECKPOINTS_DIR",
    "CONFIG_FILE",
    "GENERATION_FILE",
    "LAYOUT",
    "STAGES_DIR",
    "TOKENIZER_DIR",
    "WEIGHTS_FILE",
    "CheckpointError",
    "RunDir",
    "save_weights",
    "verify_weights",
]
