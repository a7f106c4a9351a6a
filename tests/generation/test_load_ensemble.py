"""load_ensemble: finished AR runs of one tokenizer decoded as one model; mismatched runs are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nl2code.config import from_dict
from nl2code.data.tokenizer import CodeTokenizer
from nl2code.generation import GenerationConfig, RunError, load_ensemble, load_run
from nl2code.generation.autoregressive import ARGenerator
from nl2code.models import build_model
from nl2code.models.ensemble import Ensemble
from nl2code.rundir import RunDir
from nl2code.train.config import RunConfig

TEXT = ["find . -name '*.txt'\n", "list all text files", "ls -la | grep x\n"] * 20


def make_run(root: Path, seed: int, text: list[str] = TEXT, fmt: str = "nl_code") -> Path:
    run = RunDir(root)
    tok = CodeTokenizer.train(text, vocab_size=300)
    run.save_tokenizer(tok)
    model = {"kind": "codegen", "vocab_size": tok.vocab_size, "d_model": 32, "n_layers": 1, "n_heads": 4,
             "max_seq_len": 64}  # fmt: skip
    cfg = from_dict(RunConfig, {"model": model, "objective": {"kind": "causal_lm"}, "data": {"format": fmt}})
    run.save_config(cfg)
    run.save_weights(build_model(cfg.model, generator=torch.Generator().manual_seed(seed)))
    return run.path


def texts(gen: ARGenerator, cfg: GenerationConfig) -> list[list[str]]:
    return [[c.text for c in cs] for cs in gen.generate(["list all text files", "show x"], cfg)]


def test_runs_decode_as_one_model_and_a_run_with_itself_as_the_run(tmp_path):
    a, b = make_run(tmp_path / "a", 0), make_run(tmp_path / "b", 1)
    both = load_ensemble([a, b])
    assert isinstance(both.model, Ensemble) and len(both.model.members) == 2
    assert both.run_dir == load_run(a).run_dir and both.spec == load_run(a).spec
    cfg = GenerationConfig(n=3, temperature=1.0, max_new_tokens=6, seed=2)
    assert all(len(cs) == 3 for cs in texts(ARGenerator(both), cfg))
    twice = ARGenerator(load_ensemble([a, a]))
    assert texts(twice, cfg) == texts(ARGenerator(load_run(a)), cfg)  # log(mean(p, p)) = log p


def test_mismatched_runs_are_refused_naming_the_run(tmp_path):
    a = make_run(tmp_path / "a", 0)
    other_tok = make_run(tmp_path / "tok", 0, text=["echo hello world\n", "say hello"] * 30)
    with pytest.raises(RunError, match="tokenizer differs"):
        load_ensemble([a, other_tok])
    code_only = make_run(tmp_path / "code", 1, fmt="code")
    with pytest.raises(RunError, match="generation spec"):
        load_ensemble([a, code_only])
