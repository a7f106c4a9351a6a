"""The performance paths (benchmarks/results/train_throughput.md, generation.md) compute what the plain
formulas do: joint q/k rotary, fused RMSNorm, logits of the last positions only, the mask-free decode
step over an unpadded KV cache, and the fused AdamW on CPU."""

from __future__ import annotations

import pytest
import torch

from nl2code.models import CodeGenConfig, build_model
from nl2code.models.layers import RMSNorm, RotaryEmbedding, apply_rotary, rotary_tables, rotate
from nl2code.train.config import TrainConfig
from nl2code.train.optim import build_optimizer

V = 50


def tiny(**kw):
    cfg = CodeGenConfig(**{"vocab_size": V, "d_model": 32, "n_layers": 2, "n_heads": 4, "max_seq_len": 32, **kw})
    return build_model(cfg, generator=torch.Generator().manual_seed(0)).eval()


def reference_rotary(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def test_rotate_equals_the_rotate_half_formula(generator):
    rope = RotaryEmbedding(8, 16)
    x = torch.randn(2, 3, 5, 8, generator=generator)  # (B, H, T, Hd)
    cos, sin = rope(torch.arange(5))
    torch.testing.assert_close(apply_rotary(x, cos, sin), reference_rotary(x, cos, sin))
    pos = torch.tensor([[0, 1, 2, 3, 4], [3, 4, 5, 6, 7]])  # per-sequence positions (B, T)
    cos_b, sin_b = rope(pos)
    torch.testing.assert_close(apply_rotary(x, cos_b, sin_b), reference_rotary(x, cos_b[:, None], sin_b[:, None]))
    # the joint (B, T, 2, H, Hd) layout used by Attention
    qk = x.permute(0, 2, 1, 3)[:, :, None].expand(2, 5, 2, 3, 8)
    c, s = (t[:, None, None] for t in rotary_tables(cos, sin))
    torch.testing.assert_close(rotate(qk, c, s)[:, :, 1].permute(0, 2, 1, 3), reference_rotary(x, cos, sin))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rmsnorm_equals_the_float32_formula(generator, dtype):
    norm = RMSNorm(16)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16, generator=generator))
    x = torch.randn(3, 4, 16, generator=generator).to(dtype)
    xf = x.float()
    expected = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + norm.eps) * norm.weight).to(dtype)
    torch.testing.assert_close(norm(x), expected)
    assert norm(x).dtype == dtype


def test_logits_to_keep_gives_the_last_rows(generator):
    model = tiny()
    ids = torch.randint(3, V, (2, 9), generator=generator)
    full = model(ids).logits
    torch.testing.assert_close(model(ids, logits_to_keep=1).logits, full[:, -1:])
    torch.testing.assert_close(model(ids, logits_to_keep=3).logits, full[:, -3:])


@pytest.mark.parametrize("padded", [False, True])
def test_decode_over_a_cache_equals_full_recompute(generator, padded):
    model = tiny(mlp="swiglu")
    ids = torch.randint(3, V, (2, 6), generator=generator)
    keep = torch.ones(2, 6, dtype=torch.bool)
    if padded:
        keep[1, :2] = False  # left padding forces the masked path
    new = torch.randint(3, V, (2, 4), generator=generator)
    full_keep = torch.cat([keep, torch.ones(2, 4, dtype=torch.bool)], dim=1)
    reference = model(torch.cat([ids, new], dim=1), attention_mask=full_keep).logits
    cache = model.new_cache(2, 10)
    model(ids, attention_mask=keep, cache=cache)
    assert cache.has_padding == padded
    for t in range(4):
        out = model(new[:, t : t + 1], cache=cache).logits
        torch.testing.assert_close(out[:, 0], reference[:, 6 + t], atol=1e-5, rtol=1e-5)


def test_cpu_optimizer_is_the_fused_adamw():
    model = tiny()
    opt = build_optimizer(model, TrainConfig(), torch.device("cpu"))
    assert opt.defaults["fused"] is True
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randint(3, V, (1, 5))).logits.sum().backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
