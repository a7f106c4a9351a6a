"""Tiny random transformers checkpoints built locally (no download), one per supported family."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

VOCAB = 101


def configs(tf: Any) -> dict[str, Any]:
    """family name -> a tiny transformers config (GQA, biases, partial rotary, MoE, rope scaling)."""
    common = {"vocab_size": VOCAB, "max_position_embeddings": 128, "bos_token_id": 1, "eos_token_id": 2}
    llama = {
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-6,
    }
    return {
        "llama_gqa": tf.LlamaConfig(**common, **llama, tie_word_embeddings=False),
        "llama_rope_llama3": tf.LlamaConfig(
            **common,
            **llama,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
                "rope_theta": 500000.0,
            },
        ),
        "llama_rope_linear": tf.LlamaConfig(
            **common,
            **llama,
            attention_bias=True,
            mlp_bias=True,
            rope_scaling={"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0},
        ),
        "qwen2": tf.Qwen2Config(**common, **llama, tie_word_embeddings=True),
        "mistral": tf.MistralConfig(**common, **{**llama, "num_key_value_heads": 1}, sliding_window=None),
        "codegen": tf.CodeGenConfig(
            vocab_size=VOCAB,
            n_positions=128,
            n_embd=64,
            n_layer=2,
            n_head=4,
            rotary_dim=8,
            bos_token_id=1,
            eos_token_id=2,
        ),
        "mixtral": tf.MixtralConfig(**common, **llama, num_local_experts=4, num_experts_per_tok=2),
    }


def build(tf: Any, name: str, out: Path, seed: int = 0, shard: str = "40KB") -> Any:
    """A seeded random model of family ``name`` saved sharded to ``out``; returns it (eval, fp32).

    Norm gains and biases are perturbed away from their 1/0 init, so a mixed-up tensor shows.
    """
    torch.manual_seed(seed)
    cfg = configs(tf)[name]
    model = tf.AutoModelForCausalLM.from_config(cfg).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("bias") or "norm" in pname or ".ln_" in pname:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    model.generation_config.eos_token_id = None  # greedy comparisons run the full 32 tokens
    model.generation_config.pad_token_id = 0
    model.save_pretrained(str(out), max_shard_size=shard)
    return model


SPECIALS = ["<pad>", "<s>", "</s>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]
CODE = [
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    print(i)\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n",
] * 20


def write_tokenizer(out: Path, vocab_size: int) -> Any:
    """A byte-level BPE ``tokenizer.json`` + ``tokenizer_config.json`` + ``generation_config.json``
    in the layout of a released checkpoint: <pad>=0, <s>=1, </s>=2, Qwen-style FIM tokens."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CODE, trainer=trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "pad_token": "<pad>",
                "add_bos_token": True,
                "model_max_length": 128,
            }
        )
    )
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 1, "eos_token_id": [2, 5], "pad_token_id": 0})
    )
    return tok
