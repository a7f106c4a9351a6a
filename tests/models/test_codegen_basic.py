"""CodeGenLM: shapes, causality, padding masks, tying, deterministic init, registry."""

from __future__ import annotations

import pytest
import torch

from nl2code.config import ConfigError, from_dict
from nl2code.models import MODELS, CodeGenConfig, CodeGenLM, ModelOutput, build_model
from nl2code.models.layers import RotaryEmbedding, apply_rotary, causal_padding_mask


def tiny(**kw) -> CodeGenLM:
    cfg = CodeGenConfig(**{"vocab_size": 50, "d_model": 32, "n_layers": 2, "n_heads": 4, "max_seq_len": 24, **kw})
    return build_model(cfg, generator=torch.Generator().manual_seed(0)).eval()


def test_forward_shapes_and_output_type(generator):
    model = tiny()
    ids = torch.randint(0, 50, (3, 10), generator=generator)
    out = model(ids)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (3, 10, 50) and out.hidden.shape == (3, 10, 32)
    assert out.aux_loss is None


def test_is_causal(generator):
    """Changing token t changes no logits before t."""
    model = tiny()
    ids = torch.randint(0, 50, (2, 12), generator=generator)
    changed = ids.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 50
    a, b = model(ids).logits, model(changed).logits
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_left_padding_with_mask_and_positions_matches_unpadded(generator):
    model = tiny()
    ids = torch.randint(1, 50, (1, 9), generator=generator)
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3), torch.ones(1, 9)], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0).long()
    out = model(padded, attention_mask=mask, position_ids=positions).logits
    assert torch.isfinite(out).all()  # fully padded query rows must not produce NaN
    torch.testing.assert_close(out[:, 3:], model(ids).logits, atol=1e-5, rtol=1e-5)


def test_right_padding_needs_no_mask(generator):
    model = tiny()
    ids = torch.randint(1, 50, (1, 8), generator=generator)
    padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(padded).logits[:, :8], model(ids).logits, atol=1e-5, rtol=1e-5)


def test_causal_padding_mask_shape_and_values():
    mask = causal_padding_mask(torch.tensor([[0, 1, 1]]))
    assert mask.shape == (1, 1, 3, 3)
    assert mask[0, 0].tolist() == [[True, False, False], [False, True, False], [False, True, True]]


def test_rotary_preserves_norm_and_is_relative():
    rope = RotaryEmbedding(8, 32)
    q = torch.randn(1, 1, 1, 8)
    k = torch.randn(1, 1, 1, 8)

    def score(pq: int, pk: int) -> torch.Tensor:
        cq, sq = rope(torch.tensor([pq]))
        ck, sk = rope(torch.tensor([pk]))
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum()

    cos, sin = rope(torch.tensor([5]))
    torch.testing.assert_close(apply_rotary(q, cos, sin).norm(), q.norm())
    torch.testing.assert_close(score(3, 1), score(10, 8))  # depends on the offset only


def test_tied_and_untied_embeddings():
    tied, untied = tiny(), tiny(tie_embeddings=False)
    assert tied.lm_head.weight is tied.embed.weight
    assert untied.lm_head.weight is not untied.embed.weight
    assert untied.num_parameters() - tied.num_parameters() == 50 * 32
    assert "lm_head.weight" in dict(tied.named_parameters(remove_duplicate=False))


def test_init_is_deterministic_under_a_generator():
    a, b = tiny(), tiny()
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    c = build_model(a.cfg, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a.embed.weight, c.embed.weight)


def test_swiglu_and_sequence_limit():
    model = tiny(mlp="swiglu")
    assert model.blocks[0].mlp.up.out_features == 88  # 8/3 * 32 rounded up to a multiple of 8
    with pytest.raises(ValueError, match="exceeds max_seq_len 24"):
        model(torch.zeros(1, 25, dtype=torch.long))


def test_config_is_strict_and_registered():
    assert MODELS["codegen"] == (CodeGenConfig, CodeGenLM)
    with pytest.raises(ConfigError, match="must be an even integer"):
        from_dict(CodeGenConfig, {"d_model": 30, "n_heads": 4})
    with pytest.raises(ConfigError, match="unknown key 'd_modle'"):
        from_dict(CodeGenConfig, {"d_modle": 30})
    with pytest.raises(ValueError, match="vocab_size must be resolved"):
        CodeGenLM(CodeGenConfig())


def test_backward_reaches_every_parameter(generator):
    model = tiny().train()
    ids = torch.randint(0, 50, (2, 10), generator=generator)
    model(ids).logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
