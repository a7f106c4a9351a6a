"""`nl2code train` through the CLI entry, in-process: help, input errors, stages, resume rules."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from runhelpers import assert_bit_identical, train_losses

from nl2code.cli import main
from nl2code.config import from_dict, registry_kinds
from nl2code.train.config import DataConfig, RunConfig, StageConfig, TokenizerConfig, TrainConfig, load_run_config

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke" / "codegen.yaml"
STAGES = REPO / "configs" / "smoke" / "codegen_stages.yaml"


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo line wrapping
    for flag in ("--run-dir", "--resume", "--print-config", "key=value", "CONFIG.yaml"):
        assert flag in text
    sections = [("train", TrainConfig), ("data", DataConfig), ("tokenizer", TokenizerConfig)]
    sections += [("model", c) for c in registry_kinds("model").values()]
    sections += [("objective", c) for c in registry_kinds("objective").values()]
    sections += [("stages[i]", StageConfig)]
    for prefix, cls in sections:
        for f in dataclasses.fields(cls):
            if prefix != "stages[i]" and f.metadata.get("registry"):
                continue
            assert f"{prefix}.{f.name} (" in text, f"{prefix}.{f.name} missing from --help"
    for f in dataclasses.fields(TrainConfig):  # every train option also says what it does
        assert f.metadata.get("help"), f.name
    assert "torchrun --nproc_per_node=N -m nl2code train" in text


def test_smoke_configs_load():
    for path in (SMOKE, STAGES):
        cfg, stages = load_run_config(path)
        assert stages and all(s.train.max_steps >= 100 for s in stages)
    _, stages = load_run_config(STAGES)
    assert [s.name for s in stages] == ["pretrain", "finetune"]
    assert stages[0].data.format == "code" and stages[1].data.format == "nl_code"
    assert stages[1].train.lr == 1e-3 and stages[1].train.max_steps == stages[0].train.max_steps


RECIPES = sorted(
    p.relative_to(REPO).as_posix() for d in ("codefusion", "codegen") for p in (REPO / "configs" / d).glob("*.yaml")
)


@pytest.mark.parametrize("path", RECIPES)
def test_every_recipe_loads_strictly(path):
    """Each shipped CodeFusion / CodeGen recipe (its ``extends:`` resolved) is a valid run config: a key renamed in the
    code and left in a recipe fails here, not an hour into a benchmark."""
    cfg, stages = load_run_config(REPO / path)
    assert stages and cfg.model is not None


def test_bad_override_is_one_line_naming_file_and_key(tmp_path, capsys):
    assert main(["train", str(SMOKE), "--run-dir", str(tmp_path / "r"), "train.lrr=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(SMOKE) in err and "unknown key 'train.lrr'" in err
    assert main(["train", str(SMOKE), "--run-dir", str(tmp_path / "r"), "train.max_steps=many"]) == 2
    assert "train.max_steps: expected an integer" in capsys.readouterr().err


def test_bad_stage_override_names_the_stage(tmp_path):
    cfg = yaml.safe_load(STAGES.read_text())
    cfg["stages"][1]["train"]["lrr"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(Exception, match=r"bad.yaml: unknown key 'stages\[1\].train.lrr'"):
        load_run_config(bad)


def test_print_config_round_trips(capsys):
    assert main(["train", str(SMOKE), "--run-dir", "unused", "--print-config", "train.max_steps=7"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    cfg = from_dict(RunConfig, data)
    assert cfg.train.max_steps == 7 and cfg.model.kind == "codegen"


def test_two_stage_run_then_resume_is_a_no_op(tmp_path, fast_overrides, capsys):
    run_dir = tmp_path / "run"
    args = ["train", str(STAGES), "--run-dir", str(run_dir), *fast_overrides, "train.max_steps=8"]
    assert main(args) == 0
    for stage in ("pretrain", "finetune"):
        assert (run_dir / "stages" / stage / "model.safetensors").is_file()
        assert [s for s, _ in train_losses(run_dir, stage)] == list(range(1, 9))
    assert_bit_identical(run_dir / "stages" / "finetune" / "model.safetensors", run_dir / "model.safetensors")
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["vocab_size"] > 0  # resolved from the tokenizer
    # The fine-tune stage started from the pre-trained weights: its first loss is already lower
    # than the pre-training stage's first loss on the same model.
    assert train_losses(run_dir, "finetune")[0][1] < train_losses(run_dir, "pretrain")[0][1]

    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "stage 'pretrain' already finished" in err and "stage 'finetune' already finished" in err
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in recs if r["split"] == "train"]) == 16


def test_existing_run_needs_resume_and_resume_keeps_the_model(tmp_path, fast_overrides, capsys):
    run_dir = tmp_path / "run"
    args = ["train", str(SMOKE), "--run-dir", str(run_dir), *fast_overrides, "train.max_steps=4"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert main([*args, "--resume", "model.d_model=48"]) == 2
    assert "started with a different model.d_model" in capsys.readouterr().err
    # train.* may change on resume: a longer run continues from the last checkpoint.
    assert main([*args, "--resume", "train.max_steps=6"]) == 0
    err = capsys.readouterr().err
    assert "changed settings: train.max_steps" in err and "(step 4)" in err
    assert [s for s, _ in train_losses(run_dir)] == list(range(1, 7))


def test_a_key_added_since_the_run_started_resumes_at_its_default(tmp_path, fast_overrides, capsys):
    """A run saved before a config key existed (its config.yaml lacks it) still resumes."""
    import yaml

    run_dir = tmp_path / "run"
    args = ["train", str(SMOKE), "--run-dir", str(run_dir), *fast_overrides, "train.max_steps=4"]
    assert main(args) == 0
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    del saved["train"]["seed"]  # as if `train.seed` had been added to the code after this run began
    del saved["objective"][next(k for k in saved["objective"] if k != "kind")]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0, capsys.readouterr().err
