"""CLI edges of ``generate`` / ``infill`` / ``serve`` (issue #17, part 5): each bad setting is a one-line
error before any work, and a damaged final ``model.safetensors`` is named instead of a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_generate_cli import TEXTS, make_run

from nl2code import cli
from nl2code import config as config_io
from nl2code.api import GenerationConfig, RunError, load_generator
from nl2code.config import from_dict
from nl2code.data.tokenizer import CodeTokenizer
from nl2code.models import build_model
from nl2code.train.checkpoint import save_weights
from nl2code.train.config import RunConfig

T = 20  # the diffusion run's training steps


def make_cf_run(root: Path) -> Path:
    """A tiny untrained CodeFusion run with T = 20."""
    tok = CodeTokenizer.train(TEXTS * 4, vocab_size=300)
    tok.save(root / "tokenizer")
    cfg = from_dict(RunConfig, {
        "model": {"kind": "codefusion", "vocab_size": tok.vocab_size, "d_model": 32, "n_heads": 4,
                  "encoder_layers": 1, "denoiser_layers": 1, "decoder_layers": 1, "embed_dim": 8,
                  "code_length": 16, "max_nl_length": 16, "num_timesteps": T},
        "objective": {"kind": "codefusion", "task": "finetune"},
        "data": {"format": "code_nl", "max_len": 16},
    })  # fmt: skip
    config_io.save(cfg, root / "config.yaml")
    save_weights(build_model(cfg.model, generator=torch.Generator().manual_seed(0)), root / "model.safetensors")
    return root


@pytest.fixture(scope="module")
def ar_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("ar"))


@pytest.fixture(scope="module")
def cf_run(tmp_path_factory) -> Path:
    return make_cf_run(tmp_path_factory.mktemp("cf"))


def main(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code: int, err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"nl2code {command}: error:"), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if the command gets as far as loading the model."""

    def refuse(*_a, **_k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("nl2code.api.load_generator", refuse)


@pytest.fixture
def no_generation(monkeypatch):
    """Fail the test if the command starts generating."""

    def refuse(*_a, **_k):
        raise AssertionError("generation started")

    from nl2code.generation.diffusion import DiffusionGenerator

    monkeypatch.setattr(DiffusionGenerator, "generate", refuse)
    monkeypatch.setattr(DiffusionGenerator, "infill", refuse)


# -- --steps beyond the diffusion T ----------------------------------------------------------------------


def test_generate_and_infill_refuse_steps_above_t_before_generating(cf_run, capsys, no_generation):
    code, _, err = main(["generate", "--run", str(cf_run), "x", "--steps", "100000"], capsys)
    line = one_line_error(code, err, "generate")
    assert "--steps 100000" in line and f"1..{T}" in line and f"T is {T}" in line
    code, _, err = main(["infill", "--run", str(cf_run), "--prefix", "ls", "--suffix", "", "--steps", "21"], capsys)
    assert "--steps 21" in one_line_error(code, err, "infill")


def test_steps_up_to_t_still_work(cf_run, capsys):
    code, out, _ = main(["generate", "--run", str(cf_run), "x", "--steps", str(T), "--json"], capsys)
    assert code == 0 and len(json.loads(out)) == 1


def test_draws_keep_the_best_distinct_candidates(cf_run, capsys, monkeypatch):
    """--draws D samples D candidates and prints what best_distinct keeps of them (its own tests pin
    the de-duplication; here: the CLI hands it all D draws and prints exactly its choice)."""
    import nl2code.generation.diffusion as gd

    real, seen = gd.best_distinct, []

    def spy(ranked, n):
        kept = real(ranked, n)
        seen.append((len(ranked), n, [c.text for c in kept]))
        return kept

    monkeypatch.setattr(gd, "best_distinct", spy)
    code, out, _ = main(["generate", "--run", str(cf_run), "x", "-n", "3", "--draws", "12", "--steps", "2", "--json"],
                        capsys)  # fmt: skip
    texts = json.loads(out)
    assert code == 0 and [s[:2] for s in seen] == [(12, 3)] and texts == seen[0][2] and len(set(texts)) == 3
    code, _, err = main(["generate", "--run", str(cf_run), "x", "--draws", "-1"], capsys)
    assert "draws must be >= 0" in one_line_error(code, err, "generate")


def test_serve_refuses_steps_above_t_before_binding(cf_run, capsys, monkeypatch):
    def no_bind(*_a, **_k):
        raise AssertionError("the port was bound")

    monkeypatch.setattr("nl2code.commands.serve._bind", no_bind)
    code, _, err = main(["serve", "--run", str(cf_run), "--steps", "5000", "--port", "0"], capsys)
    line = one_line_error(code, err, "serve")
    assert "--steps 5000" in line and f"T is {T}" in line


def test_create_app_checks_steps_and_serves_valid_ones(cf_run):
    from fastapi.testclient import TestClient

    from nl2code.serve import create_app

    gen = load_generator(cf_run)
    with pytest.raises(ValueError, match=f"T is {T}"):
        create_app(gen, diffusion_steps=T + 1)
    with TestClient(create_app(gen, diffusion_steps=3)) as client:
        r = client.post("/v1/completions", json={"prompt": "list files", "n": 2})
        assert r.status_code == 200 and len(r.json()["choices"]) == 2


# -- temperature ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-0.5"])
def test_bad_temperatures_are_one_line_errors_before_loading(ar_run, capsys, no_loading, value):
    code, _, err = main(["generate", "--run", str(ar_run), "x", f"--temperature={value}"], capsys)
    assert "temperature must be a finite number >= 0" in one_line_error(code, err, "generate")
    code, _, err = main(["infill", "--run", str(ar_run), "--prefix", "a", "--suffix", "b", f"--temperature={value}"],
                        capsys)  # fmt: skip
    assert "temperature" in one_line_error(code, err, "infill")


def test_tiny_temperature_decodes_like_zero(ar_run, capsys):
    assert GenerationConfig(temperature=1e-300).temperature == 0.0
    assert GenerationConfig(temperature=0.5).temperature == 0.5
    for n in ("1", "3"):
        args = ["generate", "--run", str(ar_run), "find files", "list", "-n", n, "--max-new-tokens", "8", "--json"]
        _, greedy, _ = main([*args, "--temperature", "0"], capsys)
        _, tiny, _ = main([*args, "--temperature", "1e-300"], capsys)
        assert json.loads(tiny) == json.loads(greedy)


# -- --out ---------------------------------------------------------------------------------------------------


def test_unwritable_out_fails_before_loading(ar_run, tmp_path, capsys, no_loading):
    code, _, err = main(["generate", "--run", str(ar_run), "x", "--out", "/nonexistent/dir/s.jsonl"], capsys)
    assert "/nonexistent/dir does not exist" in one_line_error(code, err, "generate")
    code, _, err = main(["generate", "--run", str(ar_run), "x", "--out", str(tmp_path)], capsys)
    assert "is a directory" in one_line_error(code, err, "generate")
    missing = tmp_path / "no" / "mtpb.jsonl"
    code, _, err = main(["generate", "--run", str(ar_run), "--benchmark", "mtpb", "--data", "x", "--out", str(missing)],
                        capsys)  # fmt: skip
    assert "does not exist" in one_line_error(code, err, "generate")


def test_a_failed_write_leaves_the_old_out_file(tmp_path):
    from nl2code.commands.generate import replace_when_done

    out = tmp_path / "s.jsonl"
    out.write_text("old\n")
    with pytest.raises(RuntimeError), replace_when_done(str(out)) as f:
        f.write("half")
        raise RuntimeError("generation failed")
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["s.jsonl"]
    link = tmp_path / "link.jsonl"
    link.symlink_to(out)
    with replace_when_done(str(link)) as f:
        f.write("new\n")
    assert link.is_symlink() and out.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.jsonl", "s.jsonl"]


# -- damaged final weights -------------------------------------------------------------------------------------


def damaged_copy(src: Path, dst: Path, how: str) -> Path:
    dst.mkdir()
    (dst / "config.yaml").write_bytes((src / "config.yaml").read_bytes())
    (dst / "tokenizer").mkdir()
    for f in (src / "tokenizer").iterdir():
        (dst / "tokenizer" / f.name).write_bytes(f.read_bytes())
    data = (src / "model.safetensors").read_bytes()
    damaged = {"truncated": data[: len(data) // 2], "header-only": data[:7], "appended": data + b"\0" * 64,
               "garbage": b"not a safetensors file at all"}[how]  # fmt: skip
    (dst / "model.safetensors").write_bytes(damaged)
    return dst


@pytest.mark.parametrize("how", ["truncated", "header-only", "appended", "garbage"])
def test_damaged_final_weights_are_named_by_every_command(ar_run, tmp_path, capsys, how):
    run = damaged_copy(ar_run, tmp_path / "run", how)
    weights = str(run / "model.safetensors")
    with pytest.raises(RunError, match="--resume"):
        load_generator(run)
    for command, args in (("generate", ["x"]), ("infill", ["--prefix", "a", "--suffix", "b"]),
                          ("serve", ["--port", "0"])):  # fmt: skip
        code, _, err = main([command, "--run", str(run), *args], capsys)
        line = one_line_error(code, err, command)
        assert weights in line and "--resume" in line
