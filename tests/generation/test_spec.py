"""The generation spec: derived from the last stage, saved with a run, read back instead of the stages."""

from __future__ import annotations

from pathlib import Path

import torch

from nl2code.config import from_dict
from nl2code.data.tokenizer import CodeTokenizer
from nl2code.generation import GenerationConfig, GenerationSpec, load_generator, load_run
from nl2code.generation.spec import save_spec, spec_from_config
from nl2code.models import build_model
from nl2code.rundir import RunDir
from nl2code.train.config import RunConfig

MODEL = {"kind": "codegen", "vocab_size": 0, "d_model": 32, "n_layers": 1, "n_heads": 4, "max_seq_len": 64}


def config(**sections: object) -> RunConfig:
    return from_dict(RunConfig, {"model": MODEL, "objective": {"kind": "causal_lm"}, **sections})


def test_the_last_stage_decides():
    assert spec_from_config(config()) == GenerationSpec("nl", None, True, 0, None)
    staged = config(stages=[
        {"name": "pre", "data": {"format": "code"}, "objective": {"kind": "codegen2_mixture", "span_rate": 0.5}},
        {"name": "fim", "data": {"format": "code"}, "objective": {"kind": "codegen2_mixture", "span_rate": 0.0,
                                                                  "fim_rate": 0.5, "spm_rate": 0.9}},
    ])  # fmt: skip
    assert spec_from_config(staged) == GenerationSpec("code", "spm", True, 0, None)
    cpd = from_dict(RunConfig, {
        "model": {"kind": "codefusion", "vocab_size": 0}, "objective": {"kind": "codefusion", "task": "cpd"},
        "data": {"format": "code_cpd"},
    })  # fmt: skip
    assert spec_from_config(cpd).conditional is False and spec_from_config(cpd).guidable is False
    guided = from_dict(RunConfig, {
        "model": {"kind": "codefusion", "vocab_size": 0}, "objective": {"kind": "codefusion", "cond_dropout": 0.1},
        "data": {"format": "code_nl"},
    })  # fmt: skip
    assert spec_from_config(guided).guidable is True
    rag = config(objective={"kind": "causal_lm", "retrieval_k": 2}, data={"source": "jsonl", "path": "x.jsonl"})
    spec = spec_from_config(rag)
    assert spec.retrieval_k == 2 and spec.retrieval_data == rag.data


def make_run(root: Path, cfg: RunConfig) -> RunDir:
    run = RunDir(root)
    tok = CodeTokenizer.train(["def f(x):\n    return x + 1\n", "print the sum"] * 20, vocab_size=300)
    run.save_tokenizer(tok)
    cfg = from_dict(RunConfig, {**_plain(cfg), "model": {**MODEL, "vocab_size": tok.vocab_size}})
    run.save_config(cfg)
    run.save_weights(build_model(cfg.model, generator=torch.Generator().manual_seed(0)))
    return run


def _plain(cfg: RunConfig) -> dict:
    from nl2code.config import to_dict

    return to_dict(cfg)


def test_a_run_without_a_spec_reads_its_stages_and_a_saved_spec_wins(tmp_path):
    run = make_run(tmp_path / "run", config(data={"format": "nl_code"}))
    assert not run.generation_file.exists()  # as runs written before the spec existed
    assert load_run(run.path).spec == GenerationSpec("nl")
    assert load_generator(run.path).prompt_format == "nl"

    save_spec(run, GenerationSpec("code", "psm"))
    loaded = load_run(run.path)
    assert loaded.spec == GenerationSpec("code", "psm")
    gen = load_generator(run.path)
    assert (gen.prompt_format, gen.infill_mode) == ("code", "psm")  # the config still says nl_code
    assert len(gen.generate(["def f("], GenerationConfig(max_new_tokens=4))[0]) == 1
