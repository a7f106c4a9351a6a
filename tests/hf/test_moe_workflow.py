"""The MoE seed's workflow on an imported base, end to end through the CLI: a tiny Mistral
checkpoint -> ``hf import`` -> per-language LoRA experts -> ``merge-moe`` (hidden-state gates) ->
router fine-tuning -> ``hf export`` as Mixtral -> transformers loads it with our logits."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from nl2code import cli
from nl2code.api import load_run

from .checkpoints import configs, write_tokenizer

tf = pytest.importorskip("transformers", reason="the optional 'hf' extra is not installed")
PAIRS = {
    "python": [
        ("add two numbers", "def add(a, b):\n    return a + b\n"),
        ("print numbers to ten", "for i in range(10):\n    print(i)\n"),
        ("a point class", "class Point:\n    def __init__(self, x, y):\n        self.x = x\n"),
    ],
    "bash": [
        ("list files", "ls -la\n"),
        ("count lines", "wc -l file.txt\n"),
        ("find text files", "find . -name '*.txt'\n"),
    ],
}
TRAIN = {
    "max_steps": 3,
    "batch_size": 4,
    "warmup_steps": 1,
    "lr": 0.01,
    "log_every": 1,
    "eval_every": 3,
    "eval_batches": 1,
    "sample_every": 0,
    "ckpt_every": 3,
    "tensorboard": False,
    "device": "cpu",
    "precision": "fp32",
}


def data(path, lang: str) -> dict:
    rows = [
        {"nl": nl, "code": code, "language": lang, "split": split}
        for split in ("train", "test")
        for nl, code in PAIRS[lang]
    ] * 4
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {
        "source": "jsonl",
        "path": str(path),
        "split": "train",
        "eval_split": "test",
        "format": "nl_code",
        "max_len": 64,
    }


def train(tmp_path, name: str, config: dict):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["train", str(path), "--run-dir", str(tmp_path / name)]) == 0
    return tmp_path / name


def test_mistral_base_to_lora_experts_to_mixtral(tmp_path):
    hf_dir = tmp_path / "mistral"
    write_tokenizer(hf_dir, 300)
    cfg = configs(tf)["mistral"]
    cfg.vocab_size = 320
    torch.manual_seed(0)
    tf.AutoModelForCausalLM.from_config(cfg).save_pretrained(str(hf_dir), max_shard_size="40KB")
    base = tmp_path / "base"
    assert cli.main(["hf", "import", str(hf_dir), "--run-dir", str(base), "--format", "nl_code"]) == 0

    lora = {"r": 4, "alpha": 8.0, "targets": ["mlp\\.(gate|up|down)"]}
    experts = {
        lang: train(
            tmp_path,
            f"expert_{lang}",
            {"init_from": str(base), "adapters": lora, "data": data(tmp_path / f"{lang}.jsonl", lang), "train": TRAIN},
        )
        for lang in PAIRS
    }
    merge = {
        "base_model": str(base),
        "gate_mode": "hidden",
        "experts_per_token": 2,
        "experts": [
            {
                "source_model": str(experts[lang]),
                "positive_prompts": [nl for nl, _ in PAIRS[lang]],
                "negative_prompts": [nl for other in PAIRS if other != lang for nl, _ in PAIRS[other]],
            }
            for lang in PAIRS
        ],
    }
    (tmp_path / "merge.yaml").write_text(yaml.safe_dump(merge))
    assert cli.main(["merge-moe", str(tmp_path / "merge.yaml"), "--out", str(tmp_path / "merged")]) == 0
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text((tmp_path / "python.jsonl").read_text() + (tmp_path / "bash.jsonl").read_text())
    router = train(
        tmp_path,
        "router",
        {
            "init_from": str(tmp_path / "merged"),
            "data": data(tmp_path / "x.jsonl", "python") | {"path": str(mixed)},
            "train": TRAIN | {"trainable": "router"},
        },
    )
    merged_gates = load_run(tmp_path / "merged").model.blocks[0].mlp.router.gate.weight
    ours = load_run(router).model
    assert not torch.equal(ours.blocks[0].mlp.router.gate.weight, merged_gates)  # the routers trained

    assert cli.main(["hf", "export", "--run", str(router), "--out", str(tmp_path / "mixtral")]) == 0
    hf = tf.AutoModelForCausalLM.from_pretrained(str(tmp_path / "mixtral")).eval()
    assert type(hf).__name__ == "MixtralForCausalLM" and hf.config.num_local_experts == 2
    ids = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids).logits, atol=1e-4, rtol=1e-4)
    assert json.loads((tmp_path / "mixtral" / "nl2code.json").read_text())["prompt_format"] == "nl"
