"""QLoRA from ``init_from`` streams the base into NF4 (never built in full precision) and gives the
same model, and the same training, as loading it in full and quantising afterwards."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from nl2code import cli
from nl2code import config as config_io
from nl2code.config import ConfigError
from nl2code.data.tokenizer import CodeTokenizer
from nl2code.hf.safetensors_io import write_checkpoint
from nl2code.models import CodeGenConfig, CodeGenLM, build_model
from nl2code.models.moe import MoEConfig
from nl2code.models.quant import NF4Linear
from nl2code.objectives.autoregressive import CausalLMConfig
from nl2code.rundir import RunDir
from nl2code.train import adapters
from nl2code.train.config import AdapterConfig, RunConfig

TINY = {"vocab_size": 96, "d_model": 32, "n_layers": 2, "n_heads": 4, "mlp": "swiglu", "max_seq_len": 64}
VARIANTS = {
    "tied": {},
    "untied_biases": {"tie_embeddings": False, "bias": True, "head_bias": True},
    "moe_gqa": {"tie_embeddings": False, "n_kv_heads": 2, "moe": MoEConfig(n_experts=2, top_k=1)},
}
ADAPTERS = {
    "r": 4,
    "alpha": 8.0,
    "targets": ["qkv", "mlp\\.(gate|up|down)", "experts\\.\\d+\\.up"],
    "quantize_base": "nf4",
}


def write_base(run: Path, model_cfg: CodeGenConfig, dtype: torch.dtype) -> Path:
    """A run directory whose weights are stored in ``dtype`` (bf16: as ``nl2code hf import`` keeps them)."""
    run.mkdir(parents=True)
    model = CodeGenLM(model_cfg, generator=torch.Generator().manual_seed(3))
    state = {k: v for k, v in model.state_dict().items() if not (model_cfg.tie_embeddings and k == "lm_head.weight")}
    write_checkpoint(run, [(k, lambda v=v: v.to(dtype)) for k, v in state.items()])
    config_io.save(RunConfig(model=model_cfg, objective=CausalLMConfig()), RunDir(run).config_file)
    return run


def run_config(base: Path, model_cfg: CodeGenConfig, **adapter: object) -> RunConfig:
    a = AdapterConfig(**(ADAPTERS | adapter))
    return RunConfig(model=model_cfg, objective=CausalLMConfig(), init_from=str(base), adapters=a)


def prepared(cfg: RunConfig, streamed: bool) -> torch.nn.Module:
    if streamed:
        assert adapters.streams_init(cfg)
        with torch.device("meta"):
            model = build_model(cfg.model)
    else:
        model = build_model(cfg.model, generator=torch.Generator().manual_seed(0))
    return adapters.prepare_model(model, cfg, "<test>", lambda msg: None)


@pytest.mark.parametrize("double_quant", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_streamed_nf4_model_equals_quantising_after_a_full_load(tmp_path, variant, dtype, double_quant):
    model_cfg = CodeGenConfig(**TINY, **VARIANTS[variant])
    cfg = run_config(write_base(tmp_path / "base", model_cfg, dtype), model_cfg, double_quant=double_quant)
    old, new = prepared(cfg, streamed=False), prepared(cfg, streamed=True)

    assert [n for n, m in new.named_modules() if isinstance(m, NF4Linear)] == [
        n for n, m in old.named_modules() if isinstance(m, NF4Linear)
    ]
    a, b = old.state_dict(), new.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert [(n, p.requires_grad) for n, p in old.named_parameters()] == [
        (n, p.requires_grad) for n, p in new.named_parameters()
    ]
    assert not any(t.is_meta for t in [*new.parameters(), *new.buffers()])
    if model_cfg.tie_embeddings:
        assert new.lm_head.weight is new.embed.weight
    ids = torch.randint(0, TINY["vocab_size"], (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(old.eval()(ids).logits, new.eval()(ids).logits)


def test_a_weights_file_that_does_not_fit_is_a_config_error(tmp_path):
    model_cfg = CodeGenConfig(**TINY)
    cfg = run_config(write_base(tmp_path / "base", model_cfg, torch.bfloat16), model_cfg)
    wider = dataclasses.replace(cfg, model=dataclasses.replace(model_cfg, d_model=64))
    with pytest.raises(ConfigError, match="init_from: .*model.safetensors does not fit"):
        prepared(wider, streamed=True)


def test_qlora_training_is_the_same_streamed_or_not(tmp_path, tokenizer_dir, monkeypatch, capsys):
    vocab = CodeTokenizer.load(tokenizer_dir).vocab_size
    model_cfg = CodeGenConfig(**(TINY | {"vocab_size": vocab}), **VARIANTS["untied_biases"])
    base = write_base(tmp_path / "base", model_cfg, torch.bfloat16)
    shutil.copytree(tokenizer_dir, base / "tokenizer")
    data = {
        "source": "pysource",
        "options": {"max_functions": 200},
        "split": "train",
        "eval_split": "test",
        "max_len": 64,
    }
    train = {
        "max_steps": 3,
        "batch_size": 4,
        "warmup_steps": 1,
        "lr": 0.01,
        "log_every": 3,
        "eval_every": 3,
        "eval_batches": 1,
        "sample_every": 0,
        "ckpt_every": 3,
        "tensorboard": False,
        "device": "cpu",
        "precision": "fp32",
    }
    config = tmp_path / "qlora.yaml"
    config.write_text(yaml.safe_dump({"init_from": str(base), "adapters": ADAPTERS, "data": data, "train": train}))

    def run(name: str) -> Path:
        assert cli.main(["train", str(config), "--run-dir", str(tmp_path / name)]) == 0
        return tmp_path / name

    streamed = run("streamed")
    assert "(streamed into NF4)" in capsys.readouterr().err
    monkeypatch.setattr(adapters, "streams_init", lambda cfg: False)
    full = run("full")
    assert "(streamed into NF4)" not in capsys.readouterr().err
    for name in ("checkpoints/step_00000003/model.safetensors", "adapter.safetensors", "model.safetensors"):
        a, b = load_file(str(full / name)), load_file(str(streamed / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.parametrize("autocast", [False, True])
def test_nf4_linear_recomputes_its_weight_in_backward_with_the_same_gradients(autocast):
    linear = torch.nn.Linear(64, 48)
    layer = NF4Linear.from_linear(linear)
    x = torch.randn(3, 5, 64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = layer(x)
        ref = torch.nn.functional.linear(x2, layer.dequantized_weight(x2.dtype), layer.bias)
        saved = [t.numel() for t in y.grad_fn.saved_tensors] if hasattr(y.grad_fn, "saved_tensors") else []
    assert y.dtype == ref.dtype and torch.equal(y, ref)
    assert 48 * 64 not in saved  # the dequantised weight is not kept for backward
    y.float().square().sum().backward()
    ref.float().square().sum().backward()
    assert x.grad.dtype == x2.grad.dtype and torch.equal(x.grad, x2.grad)


def test_quantising_in_slices_gives_the_codes_of_one_pass(monkeypatch):
    from nl2code.models import quant

    w = torch.randn(3000, 1001, generator=torch.Generator().manual_seed(0))  # a partial last block
    sliced = quant.quantize_nf4(w, double_quant=True)
    monkeypatch.setattr(quant, "_CHUNK", 1 << 30)
    whole = quant.quantize_nf4(w, double_quant=True)
    for field in ("codes", "absmax_q", "absmax_scale", "absmax_offset"):
        assert torch.equal(getattr(sliced, field), getattr(whole, field)), field
