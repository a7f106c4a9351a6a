"""NF4 quantisation: the level table, round-trip error bound, packing, NF4Linear, and QLoRA training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nl2code.models import quant
from nl2code.models.codegen import CodeGenConfig, CodeGenLM
from nl2code.models.lora import apply_lora, count_parameters
from nl2code.models.quant import (
    NF4Linear,
    dequantize_nf4,
    dequantize_range,
    matches,
    nf4_error_bound,
    nf4_levels,
    quantize_linears,
    quantize_nf4,
)


def test_levels_are_normal_quantiles() -> None:
    # QLoRA: 8 positive and 7 negative standard-normal quantiles, offset = mean of 1-1/30 and
    # 1-1/32, plus an exact zero, scaled so the extremes are +-1.
    offset = ((1 - 1 / 30) + (1 - 1 / 32)) / 2
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    levels = torch.cat([pos, torch.zeros(1, dtype=torch.float64), neg]).sort().values
    levels = levels / levels.max()
    torch.testing.assert_close(nf4_levels().double(), levels, rtol=0, atol=1e-6)
    assert nf4_levels()[7] == 0 and nf4_levels()[0] == -1 and nf4_levels()[-1] == 1


@pytest.mark.parametrize("shape", [(64,), (16, 64), (33, 17), (5, 3, 7)])
def test_round_trip_error_within_bound(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(shape, generator=g)
    w.view(-1)[::50] *= 8  # outliers make blocks with very different absmax
    q = quantize_nf4(w)
    n_blocks = -(-w.numel() // 64)
    assert q.codes.dtype == torch.uint8 and q.codes.numel() == n_blocks * 32 and q.absmax.numel() == n_blocks
    deq = dequantize_nf4(q)
    assert deq.shape == w.shape and deq.dtype == w.dtype
    # per element: |w - deq| <= absmax_block * max_gap / 2 (+ float rounding)
    err = (w - deq).abs()
    assert (err <= nf4_error_bound(q) * (1 + 1e-6) + 1e-7).all()
    max_gap = (nf4_levels()[1:] - nf4_levels()[:-1]).max()
    torch.testing.assert_close(max_gap, torch.tensor(1.0 - 0.6961928))  # between -1 and the next level
    assert err.max() > 0  # it is lossy, so the test above is not vacuous


def test_levels_round_trip_exactly_and_zero_blocks() -> None:
    w = torch.cat([nf4_levels() * 3.0] * 4 + [torch.zeros(64)])  # block 0: exact levels, block 1: zeros
    deq = dequantize_nf4(quantize_nf4(w))
    torch.testing.assert_close(deq, w, rtol=0, atol=1e-6)
    assert torch.equal(deq[64:], torch.zeros(64))


def test_nearest_level_and_packing() -> None:
    levels = nf4_levels()
    w = torch.tensor([1.0, -1.0, 0.0, 0.3, 0.5, -0.45])  # absmax 1; nearest levels by hand
    q = quantize_nf4(w, block_size=6)
    codes = torch.stack((q.codes >> 4, q.codes & 15), -1).view(-1)
    assert codes.tolist() == [15, 0, 7, 11, 12, 3]
    assert (q.codes[0] == (15 << 4) | 0) and q.codes.numel() == 3
    torch.testing.assert_close(dequantize_nf4(q), levels[codes.long()])
    with pytest.raises(ValueError):
        quantize_nf4(w, block_size=5)


def test_double_quantisation() -> None:
    w = torch.randn(300 * 64, generator=torch.Generator().manual_seed(1))  # 300 blocks: 2 dq groups
    single, double = quantize_nf4(w), quantize_nf4(w, double_quant=True)
    assert double.absmax is None and double.absmax_q.dtype == torch.int8 and double.absmax_scale.numel() == 2
    absmax_err = (single.absmax - double.block_absmax()).abs()  # (300,)
    assert absmax_err.max() <= (single.absmax - single.absmax.mean()).abs().max() / 127 / 2 + 1e-6
    assert torch.equal(single.codes, double.codes)  # codes are chosen with the exact absmax
    half_gap = (nf4_levels()[1:] - nf4_levels()[:-1]).max() / 2
    bound = (single.absmax[:, None] * half_gap + absmax_err[:, None]).expand(-1, 64).reshape(-1)
    assert ((w - dequantize_nf4(double)).abs() <= bound * (1 + 1e-6) + 1e-7).all()


def test_nf4_linear_forward_and_state() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    layer = NF4Linear.from_linear(linear, double_quant=True)
    assert list(layer.parameters()) == [] and "codes" in layer.state_dict()
    x = torch.randn(4, 64)
    expected = x @ layer.dequantized_weight().T + linear.bias
    torch.testing.assert_close(layer(x), expected)
    rel = (layer(x) - linear(x)).norm() / linear(x).norm()
    assert rel < 0.15  # 4-bit is coarse but close (nn.Linear init is uniform, not normal)
    assert layer.to(torch.float64)(x.double()).dtype == torch.float64
    restored = NF4Linear.from_linear(nn.Linear(64, 48), double_quant=True)
    restored.load_state_dict(layer.state_dict())
    torch.testing.assert_close(restored(x.double()), layer(x.double()))


def test_quantize_linears_skips_tied_head() -> None:
    cfg = CodeGenConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, max_seq_len=16)
    model = CodeGenLM(cfg, generator=torch.Generator().manual_seed(0))
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    before = model(ids).logits
    names = quantize_linears(model, exclude=[r"mlp\.down"])
    assert len(names) == 6 and "lm_head" not in names and not any("down" in n for n in names)
    assert isinstance(model.blocks[0].attn.qkv, NF4Linear) and isinstance(model.lm_head, nn.Linear)
    after = model(ids).logits
    assert (after - before).norm() / before.norm() < 0.1
    assert matches("blocks.0.attn.qkv", ["qkv"]) and not matches("blocks.0.attn.qkvx", ["qkv"])


def test_qlora_trains_adapters_over_frozen_nf4_base() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 8))
    assert quantize_linears(model) == ["0", "2"]
    codes = [m.codes.clone() for m in model if isinstance(m, NF4Linear)]
    apply_lora(model, ["0", "2"], r=4, alpha=8, generator=torch.Generator().manual_seed(0))
    count = count_parameters(model)
    assert count.trainable == 4 * (32 + 64) + 4 * (64 + 8)
    assert count.total == count.trainable + 32 * 64 + 64 + 64 * 8 + 8
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 32, generator=g), torch.randn(64, 8, generator=g)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(25):
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    for m, c in zip([model[0].base, model[2].base], codes, strict=True):
        assert torch.equal(m.codes, c)
    assert all(p.grad is not None for p in model.parameters())  # only adapter params exist
    with pytest.raises(TypeError, match="NF4"):
        model[0].merge()


@pytest.mark.parametrize("double_quant", [False, True])
def test_dequantize_range_equals_slices_of_the_whole(double_quant: bool) -> None:
    w = torch.randn(37, 50, generator=torch.Generator().manual_seed(3))  # 1,850: the last block is partial
    q = quantize_nf4(w, block_size=64, double_quant=double_quant, dq_block_size=4)
    whole = dequantize_nf4(q)
    for start, stop in [(0, 1850), (0, 1), (63, 65), (100, 1849), (640, 1280), (1849, 1850)]:
        assert torch.equal(dequantize_range(q, start, stop), whole.view(-1)[start:stop]), (start, stop)
    layer = NF4Linear(q)
    assert torch.equal(layer.dequantized_rows(5, 9, torch.bfloat16), whole[5:9].to(torch.bfloat16))


def test_big_layers_multiply_a_slice_of_rows_at_a_time(monkeypatch) -> None:
    torch.manual_seed(0)
    layer = NF4Linear.from_linear(nn.Linear(64, 40))
    x = torch.randn(3, 5, 64, requires_grad=True)
    y_whole = layer(x)
    (g_whole,) = torch.autograd.grad(y_whole.square().sum(), x)
    calls = []
    rows = layer.dequantized_rows

    def counted(r0: int, r1: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        calls.append((r0, r1))
        return rows(r0, r1, dtype)

    monkeypatch.setattr(layer, "dequantized_rows", counted)
    monkeypatch.setattr(quant, "_MATMUL_CHUNK", 64 * 16)  # 16 rows per slice: 3 slices, the last short
    y = layer(x)
    (g,) = torch.autograd.grad(y.square().sum(), x)
    assert calls == [(0, 16), (16, 32), (32, 40)] * 2  # forward, then backward
    torch.testing.assert_close(y, y_whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(g, g_whole, atol=1e-5, rtol=1e-6)
