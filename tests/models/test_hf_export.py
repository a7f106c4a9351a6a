"""LLaMA export/import: transformers' logits equal ours; round trips; refusals name the setting."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from nl2code.models import CodeGenConfig, build_model
from nl2code.models.hf_export import ExportError, config_from_llama, export_llama, import_llama
from nl2code.models.moe import MoEConfig


def llama_like(**kw):
    cfg = CodeGenConfig(**{"vocab_size": 97, "d_model": 64, "n_layers": 2, "n_heads": 4, "mlp": "swiglu",
                           "max_seq_len": 64, "rope_theta": 5000.0, "norm_eps": 1e-6, **kw})
    model = build_model(cfg, generator=torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():  # non-trivial norm gains and biases, so a mix-up would show
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.1)
    return model


@pytest.mark.parametrize("kw", [{"tie_embeddings": True}, {"tie_embeddings": False, "bias": True}])
def test_export_import_round_trip_is_exact(tmp_path, generator, kw):
    model = llama_like(**kw)
    export_llama(model, tmp_path)
    back = import_llama(tmp_path)
    assert back.cfg == dataclasses.replace(model.cfg, d_ff=model.cfg.ff_width)
    assert (back.lm_head.weight is back.embed.weight) == model.cfg.tie_embeddings
    ids = torch.randint(0, 97, (2, 30), generator=generator)
    torch.testing.assert_close(back(ids).logits, model(ids).logits, atol=0, rtol=0)


@pytest.mark.parametrize("kw", [{"tie_embeddings": True}, {"tie_embeddings": False, "bias": True}])
def test_transformers_llama_logits_equal_ours(tmp_path, generator, kw):
    transformers = pytest.importorskip("transformers", reason="the optional 'hf' extra is not installed")
    model = llama_like(**kw)
    export_llama(model, tmp_path)
    hf = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path)).eval()
    ids = torch.randint(0, 97, (2, 40), generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids).logits, atol=1e-5, rtol=1e-5)
    # and a checkpoint written by transformers itself imports to the same function
    hf.save_pretrained(str(tmp_path / "hf"))
    back = import_llama(tmp_path / "hf")
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, hf(ids).logits, atol=1e-5, rtol=1e-5)


def test_export_writes_a_loadable_tokenizer(tmp_path):
    transformers = pytest.importorskip("transformers", reason="the optional 'hf' extra is not installed")
    from nl2code.data.tokenizer import CodeTokenizer

    tok = CodeTokenizer.train(["def f(x):\n    return x + 1\n"] * 5, vocab_size=300)
    model = llama_like(vocab_size=tok.vocab_size)
    export_llama(model, tmp_path, tokenizer=tok)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    text = "def f(x):\n    return x\n"
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == tok.encode(text)
    assert json.loads((tmp_path / "config.json").read_text())["eos_token_id"] == tok.eos_id


def test_refusals_name_the_setting(tmp_path):
    with pytest.raises(ExportError, match="mlp: swiglu"):
        export_llama(llama_like(mlp="gelu"), tmp_path)
    with pytest.raises(ExportError, match="moe"):
        export_llama(llama_like(moe=MoEConfig(n_experts=2, top_k=1)), tmp_path)
    base = {"model_type": "llama", "vocab_size": 10, "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 4, "intermediate_size": 64}
    with pytest.raises(ExportError, match="num_key_value_heads"):
        config_from_llama({**base, "num_key_value_heads": 2})
    with pytest.raises(ExportError, match="rope scaling"):
        config_from_llama({**base, "rope_scaling": {"type": "linear", "factor": 2.0}})
    assert config_from_llama(base).rope_theta == 10000.0
