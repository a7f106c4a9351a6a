"""``nl2code train`` with init_from, LoRA / QLoRA adapters and router-only training (through the loop)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, load_model, save_model

from nl2code import cli
from nl2code import config as config_io
from nl2code.api import load_run
from nl2code.data.tokenizer import CodeTokenizer
from nl2code.models import CodeGenConfig, CodeGenLM, quant
from nl2code.models.lora import merge_and_unload
from nl2code.models.quant import quantize_nf4
from nl2code.objectives.autoregressive import CausalLMConfig
from nl2code.rundir import RunDir
from nl2code.train import adapters as adapters_mod
from nl2code.train.adapters import apply_adapters
from nl2code.train.checkpoint import save_weights
from nl2code.train.config import AdapterConfig, RunConfig

DATA = {"source": "pysource", "options": {"max_functions": 300}, "split": "train", "eval_split": "test",
        "max_len": 64}
TRAIN = {"max_steps": 6, "batch_size": 8, "warmup_steps": 1, "lr": 0.01, "weight_decay": 0.1, "log_every": 3,
         "eval_every": 3, "eval_batches": 1, "sample_every": 0, "ckpt_every": 3, "tensorboard": False,
         "device": "cpu", "precision": "fp32"}


def make_base(run_dir: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    vocab = CodeTokenizer.load(tokenizer_dir).vocab_size
    cfg = RunConfig(model=CodeGenConfig(vocab_size=vocab, d_model=32, n_layers=2, n_heads=4, mlp="swiglu",
                                        max_seq_len=64), objective=CausalLMConfig())
    shutil.copytree(tokenizer_dir, run_dir / "tokenizer")
    config_io.save(cfg, run_dir / "config.yaml")
    save_weights(CodeGenLM(cfg.model, generator=torch.Generator().manual_seed(seed)), run_dir / "model.safetensors")
    return run_dir


@pytest.fixture(scope="module")
def base(tmp_path_factory, tokenizer_dir) -> Path:
    return make_base(tmp_path_factory.mktemp("base") / "run", tokenizer_dir)


def train(tmp_path: Path, config: dict, name: str = "run") -> tuple[int, Path]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / name
    return cli.main(["train", str(path), "--run-dir", str(run_dir)]), run_dir


def logits(model: torch.nn.Module) -> torch.Tensor:
    ids = torch.randint(0, model.cfg.vocab_size, (2, 30), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model.eval()(ids).logits


@pytest.mark.parametrize("quantize", [None, "nf4"])
def test_adapter_run_trains_only_adapters_and_saves_the_merged_model(base, tmp_path, capsys, quantize):
    adapters = {"r": 4, "alpha": 8.0, "targets": ["qkv", "mlp\\.(gate|up|down)"], "quantize_base": quantize}
    code, run = train(tmp_path, {"init_from": str(base), "adapters": adapters, "data": DATA, "train": TRAIN})
    assert code == 0
    err = capsys.readouterr().err
    assert f"initialised from {base / 'model.safetensors'}" in err
    assert "adapters: LoRA r=4 alpha=8 on 8 layers" in err and "[main] parameters: trainable " in err

    # checkpoint = the wrapped model: the frozen base (NF4 codes when quantised) is untouched
    start = load_file(str(base / "model.safetensors"))
    ckpt = load_file(str(run / "checkpoints" / "step_00000006" / "model.safetensors"))
    lora = {k: v for k, v in ckpt.items() if k.endswith((".lora_a", ".lora_b"))}
    assert len(lora) == 16 and all(v.abs().sum() > 0 for k, v in lora.items() if k.endswith(".lora_b"))
    for key, value in ckpt.items():
        if key in lora:
            continue
        plain = key.replace(".base.", ".")
        if key.endswith((".codes", ".absmax")):  # NF4 buffers of a quantised Linear
            q = quantize_nf4(start[plain.rsplit(".", 1)[0] + ".weight"])
            assert torch.equal(value, q.codes if key.endswith(".codes") else q.absmax), key
        else:
            assert torch.equal(value, start[plain]), f"{key} changed although frozen"
    if quantize:
        assert any(k.endswith(".codes") for k in ckpt)

    # model.safetensors = the merged dense model; it computes exactly the wrapped model's function
    dense = load_run(run).model
    cfg = load_run(base).config
    wrapped = CodeGenLM(cfg.model)
    wrapped.load_state_dict(load_run(base).model.state_dict())
    apply_adapters(wrapped, AdapterConfig(**adapters), seed=0)
    load_model(wrapped, str(run / "checkpoints" / "step_00000006" / "model.safetensors"))
    torch.testing.assert_close(logits(dense), logits(wrapped), atol=1e-5, rtol=0)
    assert not torch.equal(dense.blocks[0].mlp.up.weight, start["blocks.0.mlp.up.weight"])

    saved = load_file(str(run / "adapter.safetensors"))
    assert saved.keys() == lora.keys() and all(torch.equal(saved[k], lora[k]) for k in lora)
    info = json.loads((run / "adapter.json").read_text())
    assert info["trainable"] == info["adapter_parameters"] == sum(v.numel() for v in lora.values())
    assert info["total"] > info["trainable"] and info["adapters"]["quantize_base"] == quantize
    run_cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert run_cfg["model"]["d_model"] == 32 and run_cfg["tokenizer"]["path"] == str(base / "tokenizer")


def test_router_only_training_changes_only_the_routers(base, tmp_path, capsys):
    merge = {"base_model": str(base), "gate_mode": "random", "experts_per_token": 1,
             "experts": [{"source_model": str(base)}, {"source_model": str(base)}]}
    (tmp_path / "merge.yaml").write_text(yaml.safe_dump(merge))
    moe_dir = tmp_path / "moe"
    assert cli.main(["merge-moe", str(tmp_path / "merge.yaml"), "--out", str(moe_dir)]) == 0
    code, run = train(tmp_path, {"init_from": str(moe_dir), "data": DATA, "train": TRAIN | {"trainable": "router"}})
    assert code == 0
    assert "[main] parameters: trainable 128 / total" in capsys.readouterr().err  # 2 layers x (2 x 32) gates
    before, after = load_file(str(moe_dir / "model.safetensors")), load_file(str(run / "model.safetensors"))
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["blocks.0.mlp.router.gate.weight", "blocks.1.mlp.router.gate.weight"]
    assert load_run(run).model.cfg.moe.n_experts == 2


@pytest.mark.parametrize(("config", "message"), [
    ({"init_from": "/nonexistent/run"}, "init_from: /nonexistent/run/config.yaml is missing"),
    ({"adapters": {"targets": ["no_such_layer"]}}, "adapters.targets: no nn.Linear/NF4Linear module name matches"),
    ({"adapters": {"targets": ["lm_head"]}}, "adapters.targets: LoRA target 'lm_head' has a tied weight"),
    ({"adapters": {"quantize_base": "int8"}}, "adapters.quantize_base"),
    ({"train": TRAIN | {"trainable": "router"}}, "train.trainable: 'router' needs a model with MoE layers"),
    ({"init_from": None}, "missing required key 'model' (or set init_from: RUN_DIR)"),
    ({"model": {"kind": "codegen", "d_model": 64, "n_layers": 2, "n_heads": 4}},
     "model.safetensors does not fit the configured model"),
])  # fmt: skip
def test_bad_settings_are_one_line_errors(base, tmp_path, capsys, config, message):
    full = {"init_from": str(base), "data": DATA, "train": TRAIN} | config
    code, _ = train(tmp_path, full)
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1, errors
    assert errors[0].startswith(f"nl2code train: error: {tmp_path / 'run.yaml'}: ") and message in errors[0]


def test_help_documents_adapter_and_trainable_keys(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for key in ("adapters.r ", "adapters.quantize_base", "train.trainable", "init_from"):
        assert key in out, key


@pytest.mark.parametrize(("dtype", "rows"), [(torch.float32, None), (torch.float32, 8), (torch.bfloat16, None)])
def test_finalize_streams_the_merge_and_writes_what_merging_in_place_wrote(tmp_path, dtype, rows, monkeypatch):
    if rows:  # merge 8 rows at a time, as a 7B layer is merged 4M weights at a time
        monkeypatch.setattr(quant, "_MATMUL_CHUNK", 32 * rows)
    cfg = CodeGenConfig(vocab_size=96, d_model=32, n_layers=2, n_heads=4, mlp="swiglu", max_seq_len=32)
    model = CodeGenLM(cfg, generator=torch.Generator().manual_seed(0)).to(dtype)
    adapters = AdapterConfig(r=4, alpha=8.0, targets=["qkv", "mlp\\.(gate|up)"], quantize_base="nf4")
    apply_adapters(model, adapters, seed=0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".lora_b"):
                p.normal_(generator=torch.Generator().manual_seed(len(name)))
    made = []
    merged_weight = adapters_mod._merged_weight
    monkeypatch.setattr(adapters_mod, "_merged_weight", lambda m: made.append(m) or merged_weight(m))
    entries, metadata = adapters_mod.merged_entries(model)
    run = RunDir(tmp_path / "run")
    run.write_weights(entries, metadata)
    # 6 adapted + 4 NF4-only Linears (attn.out, mlp.down), each computed once, when its bytes are written
    assert len(made) == len({id(m) for m in made}) == 10

    streamed = load_file(str(run.weights_file))
    model.float()  # the in-place merge it replaces (a second, dense model), in fp32 as the streamed one merges
    adapters_mod.dequantize_linears(model)
    merge_and_unload(model)
    save_model(model, str(tmp_path / "inplace.safetensors"), metadata={"format": "pt"})
    inplace = load_file(str(tmp_path / "inplace.safetensors"))
    assert streamed.keys() == inplace.keys() and "lm_head.weight" not in streamed  # tied: written once
    assert metadata == {"format": "pt", "lm_head.weight": "embed.weight"}
    for key, value in inplace.items():
        if streamed[key].dtype == value.dtype:
            assert torch.equal(streamed[key], value), key
        else:  # streamed keeps the model's bf16 (merged in fp32, rounded once)
            assert dtype == torch.bfloat16 and streamed[key].dtype == dtype, key
            assert torch.equal(streamed[key], value.to(dtype)), key
    dense = CodeGenLM(cfg).to(dtype)
    load_model(dense, str(run.weights_file))
    torch.testing.assert_close(logits(dense), logits(model.to(dtype)), atol=0, rtol=0)
