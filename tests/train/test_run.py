"""``run_training``, the library call behind ``nl2code train``, the demo and the serving tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nl2code.config import ConfigError
from nl2code.generation.spec import load_spec, spec_from_config
from nl2code.rundir import RunDir
from nl2code.train.config import RunConfig, load_run_config
from nl2code.train.run import RunDirError, run_training

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke" / "codegen.yaml"


def test_a_finished_run_saves_its_generation_spec(reference_run):
    run = RunDir(reference_run)
    assert run.generation_file.is_file()
    cfg = run.load_config(RunConfig)
    assert load_spec(run, cfg) == spec_from_config(cfg)


def test_it_refuses_a_directory_that_holds_a_run_before_writing(reference_run, fast_overrides):
    cfg, stages = load_run_config(SMOKE, fast_overrides)
    before = {p: p.stat().st_mtime_ns for p in reference_run.rglob("*")}
    with pytest.raises(RunDirError, match="already holds a run"):
        run_training(cfg, reference_run, stages=stages)
    assert {p: p.stat().st_mtime_ns for p in reference_run.rglob("*")} == before


def test_copy_augmentation_adds_variants_and_refuses_retrieval(tmp_path, fast_overrides, capsys):
    # 30 pairs share a value (a file name found in one program each), 10 share none
    rows = [{"nl": f"find the file named f{i}x", "code": f"find . -name f{i}x", "split": "train"} for i in range(30)]
    rows += [{"nl": "list all files in detail", "code": "ls -la", "split": "train"}] * 10
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    own = [
        "data.source=jsonl",
        f"data.path={data}",
        "data.eval_split=null",
        "data.eval_fraction=0.0",
        "data.options={}",
    ]
    cfg, stages = load_run_config(SMOKE, [*fast_overrides, *own, "data.copy_augment=2", "train.max_steps=1"])
    assert run_training(cfg, tmp_path / "aug", stages=stages) == "completed"
    err = capsys.readouterr().err
    assert "copy augmentation: 2 variants of the 30 pairs with shared values" in err
    assert "] 100 training examples (" in err  # 40 pairs + 2 variants of each of the 30
    cfg, stages = load_run_config(SMOKE, [*fast_overrides, "data.copy_augment=2", "objective.retrieval_k=1"])
    with pytest.raises(ConfigError, match="copy_augment and objective.retrieval_k cannot combine"):
        run_training(cfg, tmp_path / "rag", stages=stages)
