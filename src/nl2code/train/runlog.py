"""Run logging on rank 0: ``metrics.jsonl`` and ``samples.jsonl`` lines, mirrored to TensorBoard.

On resume, records of the resumed stage logged after the checkpoint's step are dropped first (the
killed run wrote them, and the resumed run writes them again), so the files read like one run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from nl2code.utils.io import atomic_write

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"


def _clean(v: Any) -> Any:
    # JSON has no NaN/Infinity; keep the line parseable and the value visible.
    return str(v) if isinstance(v, float) and not math.isfinite(v) else v


def truncate_after(path: Path, stage: str, step: int) -> int:
    """Drop lines of ``stage`` with a step > ``step`` (and any torn last line); returns how many."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            dropped += 1
            continue
        if rec.get("stage") == stage and rec.get("step", 0) > step:
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        atomic_write(path, "".join(line + "\n" for line in kept))
    return dropped


class RunLogger:
    """Appends metric and sample records; a no-op on ranks other than 0 (``enabled=False``)."""

    def __init__(
        self,
        log_dir: Path,
        stage: str,
        *,
        start_step: int,
        enabled: bool,
        tensorboard: bool,
        say: Callable[[str], None],
    ):
        self.stage = stage
        self.enabled = enabled
        self._files: dict[str, TextIO] = {}
        self._tb = None
        if not enabled:
            return
        log_dir.mkdir(parents=True, exist_ok=True)
        for name in (METRICS_FILE, SAMPLES_FILE):
            truncate_after(log_dir / name, stage, start_step)
            self._files[name] = open(log_dir / name, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                say(f"note: TensorBoard logging is off ({e})")
            else:
                # purge_step drops events the killed run logged after the checkpoint.
                self._tb = SummaryWriter(str(log_dir / "tb" / stage), purge_step=start_step + 1)

    def _write(self, name: str, record: dict[str, Any]) -> None:
        fh = self._files[name]
        fh.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        fh.flush()

    def log(self, step: int, split: str, values: dict[str, float]) -> None:
        """One metrics record, e.g. ``split="train"`` with loss, lr, tok_per_s..."""
        if not self.enabled:
            return
        self._write(METRICS_FILE, {"stage": self.stage, "step": step, "split": split, **values})
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{self.stage}/{split}/{k}", v, step)

    def sample(self, step: int, prompt: str, output: str, reference: str) -> None:
        if not self.enabled:
            return
        rec = {"stage": self.stage, "step": step, "prompt": prompt, "output": output, "reference": reference}
        self._write(SAMPLES_FILE, rec)
        if self._tb is not None:
            self._tb.add_text(f"{self.stage}/sample", f"```\n{prompt}{output}\n```", step)

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files = {}
        if self._tb is not None:
            self._tb.close()
            self._tb = None
