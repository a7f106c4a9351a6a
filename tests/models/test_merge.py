"""merge-moe: dense runs -> one MoE run (mergekit-moe semantics), gate initialisation, validation, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from nl2code import cli
from nl2code.api import GenerationConfig, load_generator, load_run
from nl2code.config import ConfigError
from nl2code.data.tokenizer import CodeTokenizer
from nl2code.models import CodeGenConfig, CodeGenLM
from nl2code.models.merge import (
    COLLINEAR_COS,
    ExpertSpec,
    collinearity,
    gate_vectors,
    load_merge_config,
    merge,
    write_run,
)
from nl2code.objectives.autoregressive import CausalLMConfig
from nl2code.train.config import RunConfig

TEXTS = ["find . -name '*.py' | xargs wc -l", "ls -la /tmp", "def add(a, b):\n    return a + b",
         "sort a list of numbers", "GreaterThan(5)", "count lines in every python file"] * 5


@pytest.fixture(scope="module")
def tok_root(tmp_path_factory) -> Path:
    """A folder holding ``tokenizer/`` (what write_run copies)."""
    root = tmp_path_factory.mktemp("tok")
    CodeTokenizer.train(TEXTS, vocab_size=300).save(root / "tokenizer")
    return root


def model_config(root: Path, **kw) -> CodeGenConfig:
    vocab = CodeTokenizer.load(root / "tokenizer").vocab_size
    return CodeGenConfig(**{"vocab_size": vocab, "d_model": 32, "n_layers": 2, "n_heads": 4, "mlp": "swiglu",
                            "max_seq_len": 64, **kw})


def make_run(path: Path, root: Path, seed: int = 0, base: Path | None = None, ffn_noise: float = 0.0,
             **kw) -> Path:
    """A finished run directory; with ``base``, a copy of that run whose FFN weights are perturbed."""
    cfg = RunConfig(model=model_config(root, **kw), objective=CausalLMConfig())
    model = CodeGenLM(cfg.model, generator=torch.Generator().manual_seed(seed))
    if base is not None:
        model.load_state_dict(load_run(base).model.state_dict())
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for block in model.blocks:
                for lin in (block.mlp.gate, block.mlp.up, block.mlp.down):
                    lin.weight += ffn_noise * torch.randn(lin.weight.shape, generator=gen)
    write_run(path, cfg, model, root)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tok_root) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("runs")
    base = make_run(d / "base", tok_root)
    return {
        "base": base,
        "e1": make_run(d / "e1", tok_root, seed=1, base=base, ffn_noise=0.05),
        "e2": make_run(d / "e2", tok_root, seed=2, base=base, ffn_noise=0.05),
    }


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def expert_list(*dirs: Path, prompts: bool = True) -> list[dict]:
    words = ["find files", "sort a list", "count lines", "def add"]
    return [{"source_model": str(d), **({"positive_prompts": [words[i]]} if prompts else {})}
            for i, d in enumerate(dirs)]


@pytest.mark.parametrize(("mode", "k", "n"), [("random", 2, 3), ("hidden", 1, 2), ("cheap_embed", 3, 3)])
def test_identical_experts_reproduce_the_dense_model(runs, tmp_path, mode, k, n):
    """N copies of the base as experts: the MoE computes the dense model's function.

    Whatever the gates, the k renormalised weights sum to 1 and every expert is the same MLP, so
    ``sum_j w_j f(x) = f(x)``. Not bitwise: the weighted sum rounds differently and a matmul over
    a token subset is blocked differently from one over all tokens, so the check is to 1e-5.
    """
    cfg_path = write_yaml(tmp_path / "m.yaml", {"base_model": str(runs["base"]), "gate_mode": mode,
                                                "experts_per_token": k, "experts": expert_list(*[runs["base"]] * n)})
    _, moe, _, report = merge(load_merge_config(cfg_path), str(cfg_path))
    dense = load_run(runs["base"]).model
    ids = torch.randint(0, dense.cfg.vocab_size, (3, 40), generator=torch.Generator().manual_seed(0))
    keep = torch.ones_like(ids, dtype=torch.bool)
    keep[1, 30:] = False  # right padding: MoE blocks skip those tokens
    with torch.no_grad():
        want, got = dense(ids, attention_mask=keep).logits, moe.eval()(ids, attention_mask=keep).logits
    assert len(moe.moe_layers()) == dense.cfg.n_layers and moe.cfg.moe.top_k == k
    torch.testing.assert_close(got[keep], want[keep], atol=1e-5, rtol=0)
    assert report["experts_per_token"] == k


def test_merged_run_dir_loads_and_generates_through_the_cli(runs, tmp_path, capsys):
    cfg_path = write_yaml(tmp_path / "merge.yaml", {"base_model": str(runs["base"]), "gate_mode": "hidden",
                                                    "experts": expert_list(runs["base"], runs["base"])})
    out = tmp_path / "moe"
    assert cli.main(["merge-moe", str(cfg_path), "--out", str(out)]) == 0
    assert '"experts": 2' in capsys.readouterr().out
    for name in ("config.yaml", "model.safetensors", "tokenizer/tokenizer.json", "merge.yaml", "merge_report.json"):
        assert (out / name).is_file(), name
    gen_cfg = GenerationConfig(max_new_tokens=8)
    moe_text = load_generator(out).generate(["sort a list"], gen_cfg)[0][0].text
    dense_text = load_generator(runs["base"]).generate(["sort a list"], gen_cfg)[0][0].text
    assert moe_text == dense_text  # identical experts: same greedy continuation
    assert load_merge_config(out / "merge.yaml").experts[1].source_model == str(runs["base"])
    # the out directory is never overwritten
    assert cli.main(["merge-moe", str(cfg_path), "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_ffns_come_from_experts_and_everything_else_from_the_base(runs, tmp_path):
    experts = expert_list(runs["e1"], runs["e2"])
    experts[1] |= {"residual_scale": 0.5}
    cfg_path = write_yaml(tmp_path / "m.yaml", {"base_model": str(runs["base"]), "gate_mode": "random",
                                                "experts_per_token": 1, "seed": 3, "experts": experts})
    _, moe, _, report = merge(load_merge_config(cfg_path), str(cfg_path))
    base, e1, e2 = (load_run(runs[k]).model for k in ("base", "e1", "e2"))
    for layer, block in enumerate(moe.blocks):
        torch.testing.assert_close(block.attn.qkv.weight, base.blocks[layer].attn.qkv.weight, atol=0, rtol=0)
        torch.testing.assert_close(block.mlp_norm.weight, base.blocks[layer].mlp_norm.weight, atol=0, rtol=0)
        torch.testing.assert_close(block.mlp.experts[0].up.weight, e1.blocks[layer].mlp.up.weight, atol=0, rtol=0)
        torch.testing.assert_close(block.mlp.experts[1].gate.weight, e2.blocks[layer].mlp.gate.weight, atol=0, rtol=0)
        torch.testing.assert_close(block.mlp.experts[1].down.weight, 0.5 * e2.blocks[layer].mlp.down.weight)
    expected = torch.randn(2, 2, 32, generator=torch.Generator().manual_seed(3))  # random gates: N(0, 1)
    torch.testing.assert_close(torch.stack([b.mlp.router.gate.weight for b in moe.blocks]), expected)
    torch.testing.assert_close(moe.embed.weight, base.embed.weight, atol=0, rtol=0)
    assert report["warnings"] == []


def hand_model() -> CodeGenLM:
    """Attention and MLP outputs zeroed: the residual stream is the embedding in every layer, so
    each router sees ``rmsnorm(embedding)``; embeddings of tokens 1..4 are 2 * unit vectors (their
    own RMS-normalised value), token t of a prompt is the digit t."""
    model = CodeGenLM(CodeGenConfig(vocab_size=8, d_model=4, n_layers=3, n_heads=2, mlp="swiglu", max_seq_len=16))
    with torch.no_grad():
        model.embed.weight.zero_()
        for t in range(1, 5):
            model.embed.weight[t, t - 1] = 2.0
        for block in model.blocks:
            block.attn.out.weight.zero_()
            block.mlp.down.weight.zero_()
    return model


def encode_digits(text: str) -> list[int]:
    return [int(c) for c in text]


@pytest.mark.parametrize(("mode", "vector"), [
    # prompt means (1,1,0,0) and (0,0,2,0) -> (0.5,0.5,1,0); minus the negative (0,0,0,2)
    ("hidden", [0.5, 0.5, 1.0, -2.0]),
    # last tokens (0,2,0,0) and (0,0,2,0) -> (0,1,1,0); minus (0,0,0,2)
    ("hidden_last", [0.0, 1.0, 1.0, -2.0]),
    # token mean of e1, e2, e3 = (2/3, 2/3, 2/3, 0); minus (0,0,0,2)
    ("cheap_embed", [2 / 3, 2 / 3, 2 / 3, -2.0]),
])  # fmt: skip
def test_gate_init_modes_give_the_documented_vectors(mode, vector):
    spec = ExpertSpec("unused", positive_prompts=["12", "3"], negative_prompts=["4"])
    other = ExpertSpec("unused", positive_prompts=["4"])
    gates = gate_vectors(hand_model(), encode_digits, [spec, other], mode)  # (L, E, D)
    want = torch.tensor(vector) / math.sqrt(sum(v * v for v in vector))
    assert gates.shape == (3, 2, 4)
    for layer in range(3):  # the same vector in every layer here (cheap_embed: always)
        torch.testing.assert_close(gates[layer, 0], want, atol=1e-4, rtol=0)
        torch.testing.assert_close(gates[layer, 1], torch.tensor([0.0, 0.0, 0.0, 1.0]), atol=1e-4, rtol=0)


def test_random_gates_are_seeded_standard_normal():
    g1 = gate_vectors(hand_model(), encode_digits, [ExpertSpec("x")] * 2, "random", torch.Generator().manual_seed(5))
    torch.testing.assert_close(g1, torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(5)))


def test_collinearity_statistics_and_warning(runs, tmp_path):
    same = collinearity(torch.tensor([[[1.0, 0.0], [1.0, 1e-3]]]))[0]
    apart = collinearity(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))[0]
    assert same["max_cosine"] > COLLINEAR_COS and same["condition"] > 5
    assert apart["max_cosine"] == 0.0 and apart["condition"] == pytest.approx(1.0)
    experts = [{"source_model": str(runs["e1"]), "positive_prompts": ["sort a list"]},
               {"source_model": str(runs["e2"]), "positive_prompts": ["sort a list"]}]
    cfg_path = write_yaml(tmp_path / "m.yaml", {"base_model": str(runs["base"]), "experts": experts})
    said: list[str] = []
    _, _, _, report = merge(load_merge_config(cfg_path), str(cfg_path), said.append)
    assert len(report["warnings"]) == 2 and all("nearly collinear" in w for w in report["warnings"])
    assert said == [f"warning: {w}" for w in report["warnings"]]
    cfg_path = write_yaml(tmp_path / "r.yaml", {"base_model": str(runs["base"]), "gate_mode": "random",
                                                "experts": experts})
    assert merge(load_merge_config(cfg_path), str(cfg_path))[3]["warnings"] == []


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["experts"][0].update(positive_prompt=["x"]), "unknown key 'experts[0].positive_prompt'"),
    (lambda d: d.update(experts_per_token=3), "experts_per_token: must be between 1 and the number of experts (2)"),
    (lambda d: d["experts"][1].pop("positive_prompts"), "experts[1].positive_prompts: gate_mode hidden needs"),
    (lambda d: d.pop("base_model"), "missing required key 'base_model'"),
    (lambda d: d.update(gate_mode="softmax"), "gate_mode: expected one of"),
    (lambda d: d["experts"][0].update(negative_prompts=[" "]), "experts[0].negative_prompts[0]: empty prompt"),
    (lambda d: d.update(experts=[]), "experts: need at least one expert"),
])  # fmt: skip
def test_config_errors_name_file_and_key(runs, tmp_path, edit, message):
    data = {"base_model": str(runs["base"]), "experts": expert_list(runs["e1"], runs["e2"])}
    edit(data)
    path = write_yaml(tmp_path / "bad.yaml", data)
    with pytest.raises(ConfigError) as e:
        load_merge_config(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_run_errors_name_the_expert(runs, tok_root, tmp_path, capsys):
    other_tok = tmp_path / "other"
    CodeTokenizer.train([t.upper() for t in TEXTS], vocab_size=300).save(other_tok / "tokenizer")
    wide = make_run(tmp_path / "wide", tok_root, d_model=64)
    foreign = make_run(tmp_path / "foreign", other_tok)
    cases = [
        (tmp_path / "missing", "experts[1].source_model", "config.yaml: missing"),
        (wide, "experts[1].source_model", "model.d_model is 64 but base_model's is 32"),
        (foreign, "experts[1].source_model", "its tokenizer differs from base_model's"),
    ]
    for expert_dir, key, message in cases:
        path = write_yaml(tmp_path / "m.yaml", {"base_model": str(runs["base"]),
                                                "experts": expert_list(runs["e1"], expert_dir)})
        assert cli.main(["merge-moe", str(path), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and str(path) in err and key in err and message in err, err
    moe_dir = tmp_path / "moe"
    path = write_yaml(tmp_path / "m.yaml", {"base_model": str(runs["base"]), "gate_mode": "random",
                                            "experts": expert_list(runs["e1"], runs["e2"], prompts=False)})
    assert cli.main(["merge-moe", str(path), "--out", str(moe_dir)]) == 0
    path = write_yaml(tmp_path / "m.yaml", {"base_model": str(moe_dir), "gate_mode": "random", "experts_per_token": 1,
                                            "experts": expert_list(moe_dir, prompts=False)})
    assert cli.main(["merge-moe", str(path), "--out", str(tmp_path / "out2")]) == 2
    assert "base_model: " + str(moe_dir) + " must be a dense codegen run" in capsys.readouterr().err
