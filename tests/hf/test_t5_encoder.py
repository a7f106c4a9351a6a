"""CodeFusion's E from a local T5 encoder (``model.encoder_init``): a tiny random T5 checkpoint
(sharded, built here) gives our encoder transformers' encoder outputs, and ``nl2code train`` starts
from it with the checkpoint's own tokenizer."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from nl2code import cli
from nl2code.api import GenerationConfig, load_generator, load_run
from nl2code.hf.t5 import load_encoder, read_config
from nl2code.models.codefusion import CodeFusion, CodeFusionConfig
from nl2code.models.t5_encoder import T5Encoder

from .checkpoints import write_tokenizer

tf = pytest.importorskip("transformers", reason="the optional 'hf' extra is not installed")


def t5_checkpoint(folder, proj: str = "relu"):
    torch.manual_seed(0)
    cfg = tf.T5Config(
        vocab_size=320,
        d_model=32,
        d_kv=8,
        num_heads=4,
        d_ff=48,
        num_layers=2,
        num_decoder_layers=1,
        feed_forward_proj=proj,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
    )
    model = tf.T5ForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.add_(torch.randn(p.shape) * 0.1)
    model.save_pretrained(str(folder), max_shard_size="30KB")
    write_tokenizer(folder, 300)
    return model


@pytest.mark.parametrize("proj", ["relu", "gated-gelu"])
def test_encoder_outputs_equal_transformers(tmp_path, proj):
    hf = t5_checkpoint(tmp_path / "t5", proj)
    ours = T5Encoder(read_config(tmp_path / "t5"))
    load_encoder(ours, tmp_path / "t5")
    ids = torch.randint(0, 320, (2, 40), generator=torch.Generator().manual_seed(1))  # past max_distance
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, 25:] = 0
    with torch.no_grad():
        ref = hf.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours(ids, mask)
    torch.testing.assert_close(got[0], ref[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[1, :25], ref[1, :25], atol=1e-4, rtol=1e-4)


def test_codefusion_encoder_init_trains_and_generates(tmp_path):
    hf = t5_checkpoint(tmp_path / "t5")
    cfg = CodeFusionConfig(
        vocab_size=300,
        d_model=32,
        n_heads=4,
        denoiser_layers=1,
        decoder_layers=1,
        embed_dim=8,
        code_length=16,
        max_nl_length=16,
        num_timesteps=20,
        encoder_init=str(tmp_path / "t5"),
        t5_encoder=read_config(tmp_path / "t5"),
    )
    assert cfg.t5_encoder.num_layers == 2
    model = CodeFusion(cfg)
    load_encoder(model.t5, tmp_path / "t5")
    ids = torch.randint(0, 300, (1, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model.encode(ids), hf.encoder(input_ids=ids).last_hidden_state, atol=1e-4, rtol=1e-4)

    rows = [
        {"nl": f"list files {i}", "code": f"ls -l dir{i}\n", "language": "bash", "split": s}
        for s in ("train", "test")
        for i in range(8)
    ]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "model": {
            "kind": "codefusion",
            "d_model": 32,
            "n_heads": 4,
            "denoiser_layers": 1,
            "decoder_layers": 1,
            "embed_dim": 8,
            "code_length": 16,
            "max_nl_length": 16,
            "num_timesteps": 20,
            "encoder_init": str(tmp_path / "t5"),
        },
        "objective": {"kind": "codefusion", "task": "finetune", "preview_steps": 2},
        "data": {
            "source": "jsonl",
            "path": str(tmp_path / "pairs.jsonl"),
            "split": "train",
            "eval_split": "test",
            "format": "code_nl",
            "max_len": 16,
            "overlong": "drop",
        },
        "tokenizer": {"path": str(tmp_path / "t5")},
        "train": {
            "max_steps": 2,
            "batch_size": 4,
            "warmup_steps": 1,
            "eval_every": 2,
            "eval_batches": 1,
            "sample_every": 0,
            "log_every": 1,
            "ckpt_every": 2,
            "tensorboard": False,
            "device": "cpu",
            "precision": "fp32",
        },
    }
    (tmp_path / "cf.yaml").write_text(yaml.safe_dump(config))
    assert cli.main(["train", str(tmp_path / "cf.yaml"), "--run-dir", str(tmp_path / "run")]) == 0
    run = load_run(tmp_path / "run")
    assert type(run.tokenizer).__name__ == "HFTokenizer" and run.model.t5 is not None
    out = load_generator(tmp_path / "run").generate(["list files"], GenerationConfig(steps=4))
    assert isinstance(out[0][0].text, str)
