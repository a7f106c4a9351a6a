"""Every supported family: a tiny random transformers checkpoint (sharded, built here) imports to
our model with equal logits and greedy tokens, and exports back to a checkpoint transformers loads
to the same function. Refusals (pickles, unknown rope scaling, inexpressible models) name the cause.
"""

from __future__ import annotations

import json

import pytest
import torch

from nl2code.hf.convert import ExportRefused, export_model, import_model
from nl2code.hf.llama import UnsupportedCheckpoint
from nl2code.hf.safetensors_io import CheckpointFormatError
from nl2code.models import CodeGenConfig, build_model
from nl2code.sampling.autoregressive import sample

from .checkpoints import VOCAB, build, configs

tf = pytest.importorskip("transformers", reason="the optional 'hf' extra is not installed")
EXPORTED_AS = {
    "llama_gqa": "LlamaForCausalLM",
    "llama_rope_llama3": "LlamaForCausalLM",
    "llama_rope_linear": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "mistral": "LlamaForCausalLM",
    "codegen": "CodeGenForCausalLM",
    "mixtral": "MixtralForCausalLM",
}


def greedy(model, prompt: torch.Tensor, n: int = 32) -> list[int]:
    return sample(model, [prompt.tolist()], n=1, max_new_tokens=n, temperature=0.0)[0][0].ids


@pytest.mark.parametrize("name", list(configs(tf)))
def test_import_matches_transformers_and_exports_back(tmp_path, generator, name):
    hf = build(tf, name, tmp_path / "hf")
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()  # sharded
    imported = import_model(tmp_path / "hf")
    ours = imported.model
    assert imported.source_dtype == torch.float32 and next(ours.parameters()).dtype == torch.float32
    ids = torch.randint(0, VOCAB, (2, 40), generator=generator)
    with torch.no_grad():
        ref = hf(ids).logits
        torch.testing.assert_close(ours(ids).logits, ref, atol=1e-4, rtol=1e-4)
        expected = hf.generate(ids[:1, :8], max_new_tokens=32, do_sample=False)[0, 8:].tolist()
    assert greedy(ours, ids[0, :8]) == expected

    export_model(ours, tmp_path / "out", max_shard_bytes=30_000)
    back = tf.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval()
    assert type(back).__name__ == EXPORTED_AS[name]
    assert (tmp_path / "out" / "model.safetensors.index.json").is_file()
    assert json.loads((tmp_path / "out" / "generation_config.json").read_text())["do_sample"] is False
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, ref, atol=1e-4, rtol=1e-4)


def test_rope_scaling_is_applied():
    for name, kind in (("llama_rope_llama3", "llama3"), ("llama_rope_linear", "linear")):
        from nl2code.hf.llama import config_from_hf

        cfg = config_from_hf(configs(tf)[name].to_dict(), "config.json", 8192)
        assert cfg.rope_scaling is not None and cfg.rope_scaling.type == kind


def test_bf16_checkpoint_stays_bf16_and_can_be_upcast(tmp_path, generator):
    hf = build(tf, "llama_gqa", tmp_path / "fp32")
    hf.to(torch.bfloat16).save_pretrained(str(tmp_path / "bf16"), max_shard_size="20KB")
    ids = torch.randint(0, VOCAB, (1, 16), generator=generator)
    stored = import_model(tmp_path / "bf16")
    assert stored.source_dtype == torch.bfloat16 and next(stored.model.parameters()).dtype == torch.bfloat16
    up = import_model(tmp_path / "bf16", dtype="float32").model
    with torch.no_grad():  # the upcast model computes the bf16 weights exactly, in fp32
        ref = tf.AutoModelForCausalLM.from_pretrained(str(tmp_path / "bf16"), dtype=torch.float32)(ids).logits
        torch.testing.assert_close(up(ids).logits, ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(stored.model(ids).logits.float(), ref, atol=0.1, rtol=0.05)


def test_refusals_name_the_cause(tmp_path):
    build(tf, "llama_gqa", tmp_path / "ok")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((tmp_path / "ok" / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(CheckpointFormatError, match="never unpickles"):
        import_model(pickled)
    cfg = json.loads((tmp_path / "ok" / "config.json").read_text())
    (tmp_path / "ok" / "config.json").write_text(
        json.dumps({**cfg, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})
    )
    with pytest.raises(UnsupportedCheckpoint, match="yarn"):
        import_model(tmp_path / "ok")
    (tmp_path / "ok" / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(UnsupportedCheckpoint, match="gpt2"):
        import_model(tmp_path / "ok")
    native_gelu = build_model(CodeGenConfig(vocab_size=50, d_model=32, n_layers=1, n_heads=4, mlp="gelu"))
    with pytest.raises(ExportRefused, match="mlp: swiglu.*CodeGen model: norm"):
        export_model(native_gelu, tmp_path / "refused")
