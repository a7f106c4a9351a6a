"""The weights of the best evaluation so far (``train.keep_best``): early stopping on held-out loss.

Kept in the run (or stage) directory's ``best/`` (nl2code.rundir.BEST_DIR): the weights and the step and loss
they scored, so an interrupted run that resumes still knows its best; at the end they become the run's weights
file instead of the last ones.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

from torch import nn

from nl2code.rundir import BEST_DIR, WEIGHTS_FILE, save_weights
from nl2code.utils.io import atomic_path, atomic_write

WEIGHTS, RECORD = WEIGHTS_FILE, "best.json"


class BestWeights:
    """Offered each evaluation's loss, keeps the weights of the lowest; ``start_step``: a record from beyond it
    (an abandoned stretch of an interrupted run) is dropped, since resuming replays those steps."""

    def __init__(self, model: nn.Module, out_dir: Path, start_step: int):
        self.model, self.dir = model, Path(out_dir) / BEST_DIR
        self.loss, self.step = float("inf"), None
        record = self.dir / RECORD
        if record.is_file() and (self.dir / WEIGHTS).is_file():
            saved = json.loads(record.read_text())
            if saved["step"] <= start_step:
                self.loss, self.step = float(saved["loss"]), int(saved["step"])

    def offer(self, loss: float, step: int, weights: Callable[[], contextlib.AbstractContextManager]) -> bool:
        """Keep the weights ``weights()`` swaps in (the live or the EMA ones) when ``loss`` is the lowest yet."""
        if not loss < self.loss:  # a NaN loss never wins
            return False
        self.dir.mkdir(parents=True, exist_ok=True)
        with weights():
            save_weights(self.model, self.dir / WEIGHTS)
        self.loss, self.step = loss, step
        atomic_write(self.dir / RECORD, json.dumps({"step": step, "loss": loss}) + "\n")
        return True

    def write_to(self, path: Path, say: Callable[[str], None], stage: str) -> bool:
        """Copy the kept weights to ``path``; False when no evaluation was offered."""
        if self.step is None:
            return False
        with atomic_path(path, durable=True) as tmp:
            shutil.copyfile(self.dir / WEIGHTS, tmp)
        say(f"[{stage}] keep_best: the weights of step {self.step} (eval loss {self.loss:.4f})")
        return True
