"""CodeFusion end to end: the pipeline formats, ``nl2code train`` on the smoke config and ``nl2code
generate`` / the generation API on CodeFusion runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nl2code import cli
from nl2code import config as config_io
from nl2code.api import GenerationConfig, load_generator
from nl2code.config import from_dict
from nl2code.data.pipeline import BatchIterator, preview_prompt, tokenize
from nl2code.data.records import Record
from nl2code.data.tokenizer import CodeTokenizer
from nl2code.models import build_model
from nl2code.train.checkpoint import save_weights
from nl2code.train.config import DataConfig, RunConfig

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["list all txt files", "find . -name '*.txt'", "count lines in a.txt", "wc -l a.txt", "ls -la /tmp"]


@pytest.fixture(scope="module")
def tok() -> CodeTokenizer:
    return CodeTokenizer.train(TEXTS * 4, vocab_size=300)


# -- pipeline formats -------------------------------------------------------------------------------


def test_code_nl_format_carries_the_utterance_apart(tok):
    rec = Record("t1", "train", "count lines in a.txt", "wc -l a.txt", "bash")
    cfg = DataConfig(format="code_nl", max_len=64)
    (ex,), counts = tokenize([rec], tok, cfg)
    assert ex.input_ids.tolist() == [*tok.encode("wc -l a.txt"), tok.eos_id]
    assert ex.extras["nl"].tolist() == tok.encode("count lines in a.txt")
    assert preview_prompt(rec, tok, cfg) == tok.encode("count lines in a.txt")
    batch = next(iter(BatchIterator([ex, ex], batch_size=2, pad_id=tok.pad_id, seed=0)))
    assert batch.extras["nl_mask"].all() and batch.extras["nl"].shape[0] == 2


def test_truncation_keeps_extras(tok):
    """Overlong examples are cut with their token-aligned extras; the utterance stays whole."""
    rec = Record("t1", "train", "count lines in a.txt", "find . -name '*.txt' | wc -l a.txt", "bash")
    full, _ = tokenize([rec], tok, DataConfig(format="code_cpd", max_len=256))
    cut, counts = tokenize([rec], tok, DataConfig(format="code_cpd", max_len=4))
    assert counts["truncated"] == 1
    assert cut[0].extras["cpd_groups"].tolist() == full[0].extras["cpd_groups"][:4].tolist()
    nl_cut, _ = tokenize([rec], tok, DataConfig(format="code_nl", max_len=4))
    assert len(nl_cut[0]) == 4 and nl_cut[0].extras["nl"].tolist() == tok.encode(rec.nl)[:4]


def test_code_cpd_groups_mark_identifiers_not_eos(tok):
    rec = Record("s1", "all", "", "wc -l a.txt", "bash")
    (ex,), _ = tokenize([rec], tok, DataConfig(format="code_cpd", max_len=64))
    groups = ex.extras["cpd_groups"]
    assert len(groups) == len(ex) and groups[-1] == 0  # the <eos> is never maskable
    assert np.any(groups > 0)  # the command name `wc` is


# -- generation API on a tiny untrained run ---------------------------------------------------------


def make_run(
    root: Path,
    tok: CodeTokenizer,
    task: str = "finetune",
    decoder_layers: int = 1,
    timesteps: int = 20,
    cond_dropout: float = 0.0,
) -> Path:
    tok.save(root / "tokenizer")
    cfg = from_dict(RunConfig, {
        "model": {"kind": "codefusion", "vocab_size": tok.vocab_size, "d_model": 32, "n_heads": 4,
                  "encoder_layers": 1, "denoiser_layers": 1, "decoder_layers": decoder_layers, "embed_dim": 8,
                  "code_length": 16, "max_nl_length": 16, "num_timesteps": timesteps},
        "objective": {"kind": "codefusion", "task": task, "cond_dropout": cond_dropout},
        "data": {"format": "code_nl", "max_len": 16},
    })
    config_io.save(cfg, root / "config.yaml")
    save_weights(build_model(cfg.model, generator=torch.Generator().manual_seed(0)), root / "model.safetensors")
    return root


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tok) -> Path:
    return make_run(tmp_path_factory.mktemp("cf"), tok)


def test_generator_is_seeded_ranked_and_sized(tiny_run):
    gen = load_generator(tiny_run)
    cfg = GenerationConfig(n=4, seed=3, steps=5)
    a = gen.generate(["list all txt files", "wc"], cfg)
    assert [len(c) for c in a] == [4, 4]
    assert all(c[i].score >= c[i + 1].score for c in a for i in range(3))
    again = gen.generate(["list all txt files", "wc"], cfg)
    assert [[c.text for c in g] for g in a] == [[c.text for c in g] for g in again]
    other = gen.generate(["list all txt files", "wc"], GenerationConfig(n=4, seed=4, steps=5))
    assert [c.score for c in other[0]] != [c.score for c in a[0]]


def test_infill_and_grounding_backend(tmp_path, tok):
    run = make_run(tmp_path / "g", tok, decoder_layers=0)
    gen = load_generator(run)
    assert gen.rounding == "grounding"
    out = gen.infill("find . ", " | wc -l", GenerationConfig(n=2, steps=3))
    assert len(out) == 2 and all(isinstance(c.text, str) for c in out)


def test_unconditional_run_ignores_prompts(tmp_path, tok):
    gen = load_generator(make_run(tmp_path / "u", tok, task="unconditional"))
    assert not gen.conditional
    cfg = GenerationConfig(n=2, seed=0, steps=3)
    assert [c.text for c in gen.generate(["a"], cfg)[0]] == [c.text for c in gen.generate(["b"], cfg)[0]]


def test_guidance_needs_a_run_that_learned_the_empty_request(tiny_run, tmp_path, tok, capsys):
    guided = GenerationConfig(n=2, seed=0, steps=3, guidance=2.0)
    with pytest.raises(ValueError, match="cond_dropout"):
        load_generator(tiny_run).generate(["wc"], guided)
    argv = ["generate", "--run", str(tiny_run), "--json", "--guidance", "2", "wc"]
    assert cli.main(argv) != 0 and "cond_dropout" in capsys.readouterr().err
    run = make_run(tmp_path / "cfg", tok, cond_dropout=0.1)
    gen = load_generator(run)
    plain, twice = gen.generate(["wc"], GenerationConfig(n=2, seed=0, steps=3)), gen.generate(["wc"], guided)
    assert len(twice[0]) == 2 and [c.score for c in twice[0]] != [c.score for c in plain[0]]
    assert cli.main([*argv[:2], str(run), *argv[3:]]) == 0 and len(json.loads(capsys.readouterr().out)) == 1


def test_generate_cli_json_and_steps(tiny_run, capsys):
    argv = ["generate", "--run", str(tiny_run), "-n", "3", "--seed", "1", "--json", "list all .txt files"]
    assert cli.main([*argv, "--steps", "4"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert isinstance(first, list) and len(first) == 3 and all(isinstance(s, str) for s in first)
    assert cli.main([*argv, "--steps", "4"]) == 0
    assert json.loads(capsys.readouterr().out) == first
    assert cli.main(argv) == 0  # the default: 20 steps, all of this run's T
    assert len(json.loads(capsys.readouterr().out)) == 3
    assert cli.main([*argv, "--steps", "4", "--score", "denoise"]) == 0  # the same draws, ranked by re-denoising
    assert sorted(json.loads(capsys.readouterr().out)) == sorted(first)


@pytest.mark.parametrize("timesteps, expected", [(8, 8), (40, 20)])
def test_steps_default_to_20_at_most_the_training_T(tmp_path, tok, capsys, timesteps, expected):
    run = make_run(tmp_path / "r", tok, timesteps=timesteps)
    assert load_generator(run).default_steps() == expected
    argv = ["generate", "--run", str(run), "-n", "2", "--seed", "1", "--json", "list all .txt files"]
    assert cli.main(argv) == 0
    default = json.loads(capsys.readouterr().out)
    assert cli.main([*argv, "--steps", str(expected)]) == 0
    assert json.loads(capsys.readouterr().out) == default


# -- the smoke config, trained through the CLI ------------------------------------------------------


def test_smoke_config_trains_and_generates(shared_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)  # the config's data paths are relative to the repository root
    run = tmp_path / "run"
    overrides = ["train.max_steps=6", "train.eval_every=0", "train.log_every=3", "train.progress=lines"]
    assert cli.main(["train", "configs/smoke/codefusion.yaml", "--run-dir", str(run), *overrides]) == 0
    for stage in ("pretrain_gen", "pretrain_cpd", "finetune"):
        assert (run / "stages" / stage / "model.safetensors").is_file()
    assert (run / "model.safetensors").is_file()
    capsys.readouterr()
    argv = ["generate", "--run", str(run), "-n", "5", "--seed", "7", "--steps", "5", "--json", "list all .txt files"]
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 5
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out) == out


@pytest.mark.parametrize("name", ["bash", "cf", "python"])
def test_codefusion_configs_resolve(name, capsys):
    assert cli.main(["train", str(REPO / "configs" / "codefusion" / f"{name}.yaml"), "--run-dir", "unused",
                     "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["kind"] == "codefusion"
    assert [s["name"] for s in cfg["stages"]] == ["pretrain_gen", "pretrain_cpd", "finetune"]
    assert cfg["data"]["max_len"] == cfg["model"]["code_length"]


def test_grouped_bash_split_has_no_leak(shared_data, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("cf_results", REPO / "benchmarks" / "codefusion_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "grouped.jsonl"
    counts = mod.grouped_pairs(shared_data / "codefusion" / "benchmarks" / "BashBenchmarks.json", out)
    assert counts["test_commands_in_train"] == 0
    assert counts["train"] + counts["test"] == 12607 and 0.15 < counts["test"] / 12607 < 0.25
    assert out.read_text() == (mod.grouped_pairs(shared_data / "codefusion" / "benchmarks" / "BashBenchmarks.json",
                                                tmp_path / "again.jsonl") and (tmp_path / "again.jsonl").read_text())
