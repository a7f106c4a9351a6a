"""benchmarks/codefusion_ranking.py: the rankings are judged on the rows the run held out, never on test rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import codefusion_ranking as cr  # noqa: E402


def run_on(tmp_path: Path, eval_fraction: float) -> SimpleNamespace:
    from nl2code.config import from_dict
    from nl2code.train.config import RunConfig

    rows = [{"task_id": f"b/{i}", "nl": f"list directory d{i}", "code": f"ls -l d{i}", "language": "bash",
             "split": "train"} for i in range(40)]  # fmt: skip
    rows.append({"task_id": "b/test", "nl": "list q", "code": "ls q", "language": "bash", "split": "test"})
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    section = {"source": "jsonl", "path": str(data), "eval_fraction": eval_fraction}
    model = {"kind": "codegen", "vocab_size": 64}
    cfg = from_dict(RunConfig, {"model": model, "objective": {"kind": "causal_lm"}, "data": section})
    return SimpleNamespace(config=cfg, run_dir=tmp_path)


def test_held_out_rows_are_a_seeded_sample_of_the_held_out_part(tmp_path):
    from nl2code.data.pipeline import load_splits

    run = run_on(tmp_path, 0.3)
    _, held, _ = load_splits(run.config.data)
    every = cr.held_out_rows(run, 0, 0)
    assert set(every) == {r.task_id for r in held} and "b/test" not in every and len(every) > 3
    some = cr.held_out_rows(run, 3, 0)
    assert len(some) == 3 and set(some) <= set(every) and some.keys() == cr.held_out_rows(run, 3, 0).keys()
    with pytest.raises(SystemExit, match="held out no rows"):
        cr.held_out_rows(run_on(tmp_path, 0.0), 0, 0)
