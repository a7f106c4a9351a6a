"""LoRA: no-op init, targeting, parameter accounting, merge == unmerged, training touches only A/B."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from nl2code.models.codegen import CodeGenConfig, CodeGenLM
from nl2code.models.lora import (
    LoRALinear,
    apply_lora,
    count_parameters,
    lora_state_dict,
    merge_and_unload,
    merge_lora,
    unmerge_lora,
)


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.attn = nn.ModuleDict({"q_proj": nn.Linear(8, 16), "o_proj": nn.Linear(16, 8, bias=False)})
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn["o_proj"](torch.tanh(self.attn["q_proj"](self.norm(x)))))


def toy(seed: int = 0) -> Toy:
    torch.manual_seed(seed)
    return Toy()


def randomise_b(model: nn.Module, seed: int = 1) -> None:
    """Give adapters a non-zero B (a fresh adapter is a no-op, which would make tests vacuous)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_b.copy_(torch.randn(m.lora_b.shape, generator=g) * 0.5)


def test_fresh_adapter_is_noop_and_scale() -> None:
    base = nn.Linear(8, 5)
    x = torch.randn(3, 8)
    layer = LoRALinear(copy.deepcopy(base), r=4, alpha=8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(layer(x), base(x)) and layer.scale == 2.0
    assert LoRALinear(nn.Linear(8, 5), r=4, alpha=8, rslora=True).scale == 8 / math.sqrt(4)
    assert not layer.base.weight.requires_grad and layer.lora_a.requires_grad
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(base, r=0, alpha=1)
    with pytest.raises(TypeError):
        LoRALinear(nn.Conv1d(2, 2, 1), r=1, alpha=1)


def test_forward_is_base_plus_scaled_low_rank() -> None:
    layer = LoRALinear(nn.Linear(8, 5), r=2, alpha=3)
    randomise_b(layer)
    x = torch.randn(4, 8)
    expected = layer.base(x) + x @ (layer.lora_b @ layer.lora_a).T * 1.5
    torch.testing.assert_close(layer(x), expected)


def test_apply_lora_targets_freezes_and_counts() -> None:
    model = toy()
    names = apply_lora(model, ["q_proj", "o_proj"], r=2, alpha=4)
    assert names == ["attn.q_proj", "attn.o_proj"]
    assert isinstance(model.attn["q_proj"], LoRALinear) and isinstance(model.head, nn.Linear)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"attn.{m}.lora_{ab}" for m in ("q_proj", "o_proj") for ab in "ab"}
    count = count_parameters(model)
    lora = 2 * (8 + 16) + 2 * (16 + 8)
    base = 8 + 8 + (8 * 16 + 16) + 16 * 8 + (8 * 4 + 4)
    assert (count.trainable, count.total) == (lora, lora + base)
    assert count.percent == pytest.approx(100 * lora / (lora + base))
    assert "trainable 96" in str(count)
    # regex patterns match whole names or dotted suffixes, never an adapter's own base
    assert apply_lora(toy(), [r"attn\..*"], r=1, alpha=1) == ["attn.q_proj", "attn.o_proj"]
    assert apply_lora(model, [".*proj.*", "head"], r=1, alpha=1) == ["head"]
    with pytest.raises(ValueError, match="no nn.Linear"):
        apply_lora(toy(), ["v_proj"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_merge_equals_unmerged_and_unmerge_restores(dtype: torch.dtype) -> None:
    model = toy().to(dtype)
    apply_lora(model, ["q_proj", "o_proj", "head"], r=3, alpha=6, dropout=0.1)
    randomise_b(model)
    model.eval()  # dropout is off, so merged and unmerged compute the same function
    x = torch.randn(5, 8, dtype=dtype)
    before = model(x)
    w0 = model.head.base.weight.clone()
    merge_lora(model)
    assert all(m.merged for m in model.modules() if isinstance(m, LoRALinear))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(model(x), before, rtol=tol, atol=tol)
    assert not torch.allclose(model.head.base.weight, w0)
    unmerge_lora(model)
    torch.testing.assert_close(model.head.base.weight, w0, rtol=tol, atol=tol)
    torch.testing.assert_close(model(x), before, rtol=tol, atol=tol)


def test_merge_and_unload_gives_dense_model() -> None:
    model = toy()
    apply_lora(model, ["q_proj", "o_proj"], r=2, alpha=2)
    randomise_b(model)
    model.eval()
    x = torch.randn(3, 8)
    before = model(x)
    assert merge_and_unload(model) == ["attn.q_proj", "attn.o_proj"]
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert type(model.attn["q_proj"]) is nn.Linear
    torch.testing.assert_close(model(x), before)


def test_training_updates_only_adapters() -> None:
    model = toy()
    frozen = {n: p.clone() for n, p in model.named_parameters()}
    apply_lora(model, ["q_proj", "o_proj"], r=4, alpha=8, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 8, generator=g), torch.randn(32, 4, generator=g)
    losses = []
    for _ in range(25):
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
    for name, p in model.named_parameters():
        if "lora_" not in name:
            assert p.grad is None
            assert torch.equal(p, frozen[name.replace(".base", "")])
    assert set(lora_state_dict(model)) == {f"attn.{m}.lora_{ab}" for m in ("q_proj", "o_proj") for ab in "ab"}


def test_codegen_targets_and_tied_head() -> None:
    cfg = CodeGenConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, max_seq_len=16)
    model = CodeGenLM(cfg, generator=torch.Generator().manual_seed(0))
    names = apply_lora(model, [r"attn\.(qkv|out)", r"mlp\.(up|down)"], r=4, alpha=8)
    assert len(names) == 8 and all(n.startswith("blocks.") for n in names)
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    assert model(ids).logits.shape == (2, 8, 64)
    count = count_parameters(model)
    assert count.trainable == 2 * 4 * ((32 + 96) + (32 + 32)) + 2 * 4 * ((32 + 128) + (128 + 32))
    # the LM head shares the embedding matrix: merging an adapter into it would change both
    with pytest.raises(ValueError, match="tied"):
        apply_lora(CodeGenLM(cfg), ["lm_head"])
