"""``nl2code hf import`` end to end: the run uses the checkpoint's own tokenizer (bos, eos list,
FIM tokens from its files) and ``generate`` reproduces transformers' greedy continuation."""

from __future__ import annotations

import json

import pytest
import torch

from nl2code import cli
from nl2code.api import GenerationConfig, load_generator
from nl2code.data.tokenizer import CodeTokenizer

from .checkpoints import configs, write_tokenizer

tf = pytest.importorskip("transformers", reason="the optional 'hf' extra is not installed")


@pytest.fixture
def checkpoint(tmp_path):
    hf_dir = tmp_path / "hf"
    tok = write_tokenizer(hf_dir, 300)
    cfg = configs(tf)["llama_gqa"]
    cfg.vocab_size = 320  # padded past the tokenizer, as released checkpoints often are
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(cfg).eval()
    model.save_pretrained(str(hf_dir), max_shard_size="40KB")
    (hf_dir / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 1, "eos_token_id": [2, 5], "pad_token_id": 0})
    )
    return hf_dir, model, tok


def test_import_uses_the_checkpoint_tokenizer_and_generates_like_transformers(tmp_path, checkpoint):
    hf_dir, hf, tok = checkpoint
    run = tmp_path / "run"
    assert cli.main(["hf", "import", str(hf_dir), "--run-dir", str(run)]) == 0
    ours = CodeTokenizer.load(run / "tokenizer")
    assert type(ours).__name__ == "HFTokenizer"
    assert (ours.eos_id, ours.pad_id, ours.bos_prefix, ours.stop_ids) == (2, 0, [1], (2, 5))
    assert ours.fim_prefix_id == tok.token_to_id("<|fim_prefix|>")
    text = "def add(a, b):\n"
    assert ours.encode(text) == tok.encode(text).ids

    gen = load_generator(run)
    assert gen.infill_mode == "psm" and gen.prompt_format == "code"
    out = gen.generate([text], GenerationConfig(max_new_tokens=12))[0][0]
    prompt = torch.tensor([[1, *tok.encode(text).ids]])
    with torch.no_grad():
        ids = hf.generate(prompt, max_new_tokens=12, do_sample=False, eos_token_id=[2, 5], pad_token_id=0)
    assert out.text == tok.decode(ids[0, prompt.shape[1] :].tolist(), skip_special_tokens=True)
    assert gen.infill("def f(", "):\n", GenerationConfig(max_new_tokens=3))  # FIM prompt builds and decodes

    code = cli.main(["hf", "export", "--run", str(run), "--out", str(tmp_path / "out"), "--max-shard-size", "50KB"])
    assert code == 0
    back = tf.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval()
    assert json.loads((tmp_path / "out" / "generation_config.json").read_text())["eos_token_id"] == [2, 5]
    assert (
        tf.AutoTokenizer.from_pretrained(str(tmp_path / "out"))(text, add_special_tokens=False)["input_ids"]
        == tok.encode(text).ids
    )
    with torch.no_grad():
        torch.testing.assert_close(back(prompt).logits, hf(prompt).logits, atol=1e-4, rtol=1e-4)


def test_import_refuses_pickles_in_one_line(tmp_path, capsys):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "hf" / "pytorch_model.bin").write_bytes(b"x")
    code = cli.main(["hf", "import", str(tmp_path / "hf"), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "never unpickles" in err and len(err.strip().splitlines()) == 1
