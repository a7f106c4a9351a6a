"""Train the demo's models side by side, one process each, with one progress bar per model.

The models are small enough that one CPU thread trains each about as fast as two, so on a two-core
machine two single-threaded trainings finish in about half the time of two in a row. Each child
calls the ``nl2code train`` command's function with ``--resume`` and writes its output to
``<run>/train.log``; the parent draws progress from the runs' ``metrics.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nl2code.demo.pipeline import DemoError


def train_one(config: Path, run_dir: Path) -> int:
    """``nl2code train CONFIG --run-dir RUN --resume`` in this process; returns its exit code."""
    import torch

    from nl2code.commands.train import run_train

    threads = torch.get_num_threads()
    args = argparse.Namespace(config=str(config), overrides=[], run_dir=str(run_dir), resume=True, print_config=False)
    try:
        return run_train(args)
    finally:
        torch.set_num_threads(threads)  # the training config may have changed it for this process


def _child(config: str, run_dir: str, log: str) -> None:
    """Process entry: all output (Python and native) to the log file, exit with the command's code."""
    from nl2code.cli import CLIError
    from nl2code.config import ConfigError

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    try:
        code = train_one(Path(config), Path(run_dir))
    except (CLIError, ConfigError) as e:
        print(f"nl2code train: error: {e}", file=sys.stderr)
        code = 2
    sys.exit(code)


@dataclass
class _Job:
    name: str
    config: Path
    run_dir: Path
    total: int  # optimizer steps over all stages
    proc: mp.process.BaseProcess | None = None
    start: float = 0.0
    seconds: float | None = None

    @property
    def log(self) -> Path:
        return self.run_dir / "train.log"


def total_steps(config: dict) -> int:
    """Optimizer steps of a run config (a dict as in the YAML): the sum over its stages."""
    top = config.get("train", {}).get("max_steps", 1000)
    stages = config.get("stages") or [{}]
    return sum(st.get("train", {}).get("max_steps", top) for st in stages)


def progress(run_dir: Path) -> tuple[int, float | None]:
    """(steps done over all stages, last train loss) from a run's metrics.jsonl."""
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
    return sum(last.values()), loss if isinstance(loss, int | float) else None


def _tail(path: Path, lines: int = 15) -> str:
    if not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def train_parallel(jobs: list[tuple[str, Path, Path, int]], say, poll_s: float = 1.0) -> dict[str, float]:
    """Train ``(name, config, run_dir, total_steps)`` jobs concurrently; seconds per model.

    Raises :class:`DemoError` naming the model and showing the end of its log when a training fails.
    On Ctrl+C the children (which get the signal too) save a checkpoint and stop; the next demo run
    resumes them.
    """
    from tqdm import tqdm

    ctx = mp.get_context("spawn")  # no fork: torch and tokenizers threads do not survive it
    runs = [_Job(name, cfg, run_dir, total) for name, cfg, run_dir, total in jobs]
    tty = sys.stderr.isatty()
    bars = {j.name: tqdm(total=j.total, desc=f"train {j.name}", position=i, unit="step", disable=not tty,
                         leave=True, dynamic_ncols=True) for i, j in enumerate(runs)}
    for j in runs:
        say(f"      training {j.name} in a child process ({j.total} steps), log: {j.log}")
        j.proc = ctx.Process(target=_child, args=(str(j.config), str(j.run_dir), str(j.log)), name=f"train-{j.name}")
        j.start = time.monotonic()
        j.proc.start()
    last_line = time.monotonic()
    try:
        while any(j.seconds is None for j in runs):
            time.sleep(poll_s)
            for j in runs:
                done, loss = progress(j.run_dir)
                bar = bars[j.name]
                bar.n = min(done, j.total)
                if loss is not None:
                    bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                bar.refresh()
                if j.seconds is None and j.proc is not None and not j.proc.is_alive():
                    j.seconds = time.monotonic() - j.start
                    if j.proc.exitcode != 0:
                        for other in runs:
                            if other.proc is not None and other.proc.is_alive():
                                other.proc.terminate()  # SIGTERM: it checkpoints and stops
                                other.proc.join(60)
                        raise DemoError(f"training {j.name} failed (exit {j.proc.exitcode}); end of {j.log}:\n"
                                        f"{_tail(j.log)}\nfix the cause and run the demo again to resume")
            if not tty and time.monotonic() - last_line > 15:
                last_line = time.monotonic()
                say("      " + " | ".join(f"{j.name} {progress(j.run_dir)[0]}/{j.total}" for j in runs))
    except KeyboardInterrupt:
        for j in runs:
            if j.proc is not None:
                j.proc.join(60)
        raise
    finally:
        for bar in bars.values():
            bar.close()
    return {j.name: round(j.seconds or 0.0, 1) for j in runs}
