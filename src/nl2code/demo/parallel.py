"""Run the demo's per-model work side by side, one single-threaded child process per model.

The models are small enough that one CPU thread runs each about as fast as two, so on a two-core
machine two single-threaded processes finish in about half the time of two runs in a row. Each
child writes its output to a log file; the parent draws one progress bar per child from files the
work itself writes (the training's ``metrics.jsonl``, the generator's progress file) and, when a
child fails, stops the others and shows the end of the failed one's log.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nl2code.demo.settings import DemoError


def train_one(config: Path, run_dir: Path) -> int:
    """Train (or resume) ``config`` into ``run_dir`` in this process; returns ``nl2code train``'s exit code."""
    from nl2code.data.sources._io import SourceError
    from nl2code.rundir import CheckpointError
    from nl2code.train.config import load_run_config
    from nl2code.train.loop import TrainingError
    from nl2code.train.run import run_training
    from nl2code.utils.device import threads

    cfg, stages = load_run_config(config)
    # the training config may change the thread count; this process keeps its own
    with threads(None):
        try:
            status = run_training(cfg, run_dir, resume=True, stages=stages, source=str(config))
        except SourceError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except (TrainingError, CheckpointError) as e:
            print(f"nl2code train: error: {e}", file=sys.stderr)
            return 1
    return 130 if status == "interrupted" else 0


def _child(target: Callable[..., int | None], args: tuple, log: str) -> None:
    """Process entry: all output (Python and native) to the log file, exit with the target's code."""
    from nl2code.cli import CLIError
    from nl2code.config import ConfigError
    from nl2code.data.records import DataError
    from nl2code.utils.device import set_threads

    Path(log).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    set_threads(1)  # see the module docstring
    try:
        code = target(*args) or 0
    except (CLIError, ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except Exception:
        traceback.print_exc()
        code = 1
    # The child's own CPU time, for the step's record (the parent cannot tell its children apart).
    usage = resource.getrusage(resource.RUSAGE_SELF)
    Path(log).with_suffix(".cpu").write_text(f"{usage.ru_utime + usage.ru_stime:.2f}\n", encoding="utf-8")
    sys.exit(code)


@dataclass
class ChildJob:
    """One model's work in a child process.

    Attributes:
        name: the model (bar label).
        target: a module-level function (spawned children import it) returning an exit code.
        args: its arguments (picklable).
        log: where the child's output goes.
        total: units of work, for the bar.
        progress: called in the parent: (units done, short status or None).
    """

    name: str
    target: Callable[..., int | None]
    args: tuple
    log: Path
    total: int
    progress: Callable[[], tuple[int, str | None]]
    proc: Any = field(default=None, repr=False)
    start: float = 0.0
    seconds: float | None = None


def _tail(path: Path, lines: int = 15) -> str:
    if not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def run_children(jobs: list[ChildJob], what: str, say: Callable[[str], None], poll_s: float = 1.0) -> dict[str, float]:
    """Run every job at once; seconds per job name.

    Raises :class:`DemoError` naming the job and showing the end of its log when one fails. On
    Ctrl+C the children (which get the signal too) stop on their own (training saves a checkpoint
    first); the next demo run resumes them.
    """
    from tqdm import tqdm

    ctx = mp.get_context("spawn")  # no fork: torch and tokenizers threads do not survive it
    tty = sys.stderr.isatty()
    bars = {
        j.name: tqdm(
            total=j.total, desc=f"{what} {j.name}", position=i, unit="", disable=not tty, leave=True, dynamic_ncols=True
        )
        for i, j in enumerate(jobs)
    }
    for j in jobs:
        say(f"      {what} {j.name} in a child process; log: {j.log}")
        j.proc = ctx.Process(target=_child, args=(j.target, j.args, str(j.log)), name=f"{what}-{j.name}")
        j.start = time.monotonic()
        j.proc.start()
    last_line = time.monotonic()
    try:
        while any(j.seconds is None for j in jobs):
            time.sleep(poll_s)
            for j in jobs:
                done, status = j.progress()
                bars[j.name].n = min(done, j.total)
                if status:
                    bars[j.name].set_postfix_str(status, refresh=False)
                bars[j.name].refresh()
                if j.seconds is None and not j.proc.is_alive():
                    j.seconds = time.monotonic() - j.start
                    if j.proc.exitcode != 0:
                        _stop_others(jobs)
                        raise DemoError(
                            f"{what} {j.name} failed (exit {j.proc.exitcode}); end of {j.log}:\n"
                            f"{_tail(j.log)}\nfix the cause and run the demo again to resume"
                        )
            if not tty and time.monotonic() - last_line > 20:
                last_line = time.monotonic()
                say("      " + " | ".join(f"{what} {j.name} {j.progress()[0]}/{j.total}" for j in jobs))
    except KeyboardInterrupt:
        for j in jobs:
            j.proc.join(60)
        raise
    finally:
        for bar in bars.values():
            bar.close()
    return {j.name: round(j.seconds or 0.0, 1) for j in jobs}


def child_cpu_seconds(log: Path) -> float | None:
    """CPU seconds a finished child used (written beside its log), or None."""
    try:
        return float(log.with_suffix(".cpu").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _stop_others(jobs: list[ChildJob]) -> None:
    for other in jobs:
        if other.proc is not None and other.proc.is_alive():
            other.proc.terminate()  # SIGTERM: a training saves a checkpoint and stops
            other.proc.join(60)


# -- progress readers -----------------------------------------------------------------------------


def total_steps(config: dict) -> int:
    """Optimizer steps of a run config (a dict as in the YAML): the sum over its stages."""
    top = config.get("train", {}).get("max_steps", 1000)
    stages = config.get("stages") or [{}]
    return sum(st.get("train", {}).get("max_steps", top) for st in stages)


def training_progress(run_dir: Path) -> tuple[int, str | None]:
    """(steps done over all stages, "loss X") from a run's metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0, None
    last: dict[str, int] = {}
    loss = None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line being written
        if rec.get("split") == "train":
            last[rec.get("stage", "main")] = int(rec.get("step", 0))
            loss = rec.get("loss")
    return sum(last.values()), (f"loss {loss:.3f}" if isinstance(loss, int | float) else None)


def counter_progress(path: Path) -> tuple[int, str | None]:
    """(count, None) from a file holding one integer that a child rewrites as it goes."""
    try:
        return int(path.read_text(encoding="utf-8").strip() or 0), None
    except (OSError, ValueError):
        return 0, None
