"""CodeGenLM extensions: KV cache == full recompute, prefix-LM masking, MoE wiring, presets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nl2code.config import ConfigError, from_dict, to_dict
from nl2code.data.collate import Example, pad_collate
from nl2code.models import CodeGenConfig, CodeGenLM, build_model
from nl2code.models.moe import MoE, MoEConfig
from nl2code.models.presets import PRESETS, count_parameters, preset
from nl2code.objectives import CausalLMObjective

V = 50


def tiny(**kw) -> CodeGenLM:
    cfg = CodeGenConfig(**{"vocab_size": V, "d_model": 32, "n_layers": 2, "n_heads": 4, "max_seq_len": 32, **kw})
    return build_model(cfg, generator=torch.Generator().manual_seed(0)).eval()


@pytest.mark.parametrize("kw", [{}, {"mlp": "swiglu", "tie_embeddings": False, "bias": True}])
def test_cache_matches_full_recompute_with_left_padding(generator, kw):
    model = tiny(**kw)
    lengths = [7, 4, 1]
    ids = torch.randint(3, V, (3, 7), generator=generator)
    keep = torch.zeros(3, 7, dtype=torch.bool)
    for i, n in enumerate(lengths):
        keep[i, 7 - n :] = True
    ids = ids.masked_fill(~keep, 0)
    new = torch.randint(3, V, (3, 5), generator=generator)
    full_ids = torch.cat([ids, new], dim=1)
    full_keep = torch.cat([keep, torch.ones(3, 5, dtype=torch.bool)], dim=1)
    reference = model(full_ids, attention_mask=full_keep).logits  # (3, 12, V)

    cache = model.new_cache(3, 12)
    first = model(ids, attention_mask=keep, cache=cache).logits
    torch.testing.assert_close(first[keep], reference[:, :7][keep], atol=1e-5, rtol=1e-5)
    step = model(new[:, :2], cache=cache).logits  # two tokens at once
    torch.testing.assert_close(step, reference[:, 7:9], atol=1e-5, rtol=1e-5)
    for t in range(2, 5):  # then one at a time
        out = model(new[:, t : t + 1], cache=cache).logits
        torch.testing.assert_close(out[:, 0], reference[:, 7 + t], atol=1e-5, rtol=1e-5)
    assert cache.length == 12
    # each row equals the same sequence run alone, without padding
    for i, n in enumerate(lengths):
        alone = model(full_ids[i : i + 1, 7 - n :]).logits
        torch.testing.assert_close(reference[i : i + 1, 7 - n :], alone, atol=1e-5, rtol=1e-5)


def test_cache_select_reorders_rows(generator):
    model = tiny()
    ids = torch.randint(3, V, (2, 5), generator=generator)
    cache = model.new_cache(2, 8)
    model(ids, cache=cache)
    cache.select(torch.tensor([1, 1, 0]))
    nxt = torch.randint(3, V, (3, 1), generator=generator)
    out = model(nxt, cache=cache).logits[:, -1]
    rows = torch.cat([ids[[1, 1, 0]], nxt], dim=1)
    torch.testing.assert_close(out, model(rows).logits[:, -1], atol=1e-5, rtol=1e-5)


def test_cache_limits():
    model = tiny()
    cache = model.new_cache(1, 4)
    with pytest.raises(ValueError, match="holds 4 positions"):
        model(torch.ones(1, 5, dtype=torch.long), cache=cache)
    model(torch.ones(1, 2, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="first forward"):
        model(torch.ones(1, 1, dtype=torch.long), cache=cache, prefix_mask=torch.ones(1, 1, dtype=torch.bool))


def test_prefix_lm_is_bidirectional_over_the_prefix_only(generator):
    model = tiny(prefix_lm=True)
    ids = torch.randint(3, V, (1, 10), generator=generator)
    prefix = torch.arange(10)[None] < 4
    changed = ids.clone()
    changed[0, 3] = (changed[0, 3] + 1) % V  # last prefix token
    a = model(ids, prefix_mask=prefix).logits
    b = model(changed, prefix_mask=prefix).logits
    assert not torch.allclose(a[:, :3], b[:, :3])  # earlier prefix tokens see it
    later = ids.clone()
    later[0, 6] = (later[0, 6] + 1) % V  # a token after the prefix
    c = model(later, prefix_mask=prefix).logits
    torch.testing.assert_close(a[:, :6], c[:, :6])  # stays causal after the prefix
    # cached prefill with the prefix, then causal steps == full forward
    cache = model.new_cache(1, 10)
    first = model(ids[:, :4], cache=cache, prefix_mask=prefix[:, :4]).logits
    rest = model(ids[:, 4:], cache=cache).logits
    torch.testing.assert_close(torch.cat([first, rest], 1), a, atol=1e-5, rtol=1e-5)


def test_prefix_lm_objective_uses_non_target_tokens_as_prefix(generator):
    model = tiny(prefix_lm=True)
    batch = pad_collate([Example(np.array([5, 6, 7, 8, 9, 10]), np.array([False, False, False, True, True, True]))], 0)
    loss, _ = CausalLMObjective()(model, batch, generator)
    logits = model(batch.input_ids, prefix_mask=torch.tensor([[True, True, True, False, False, False]])).logits
    expected = torch.nn.functional.cross_entropy(logits[0, 2:5], batch.input_ids[0, 3:6])
    torch.testing.assert_close(loss, expected)


def moe_pair(every: int = 1) -> tuple[CodeGenLM, CodeGenLM]:
    """A dense model and an MoE model whose experts are upcycled copies of the dense MLPs."""
    dense = tiny(mlp="swiglu")
    moe_cfg = MoEConfig(n_experts=3, top_k=2, every=every, switch_coef=0.01, z_coef=0.001)
    sparse = CodeGenLM(dataclasses.replace(dense.cfg, moe=moe_cfg), generator=torch.Generator().manual_seed(1))
    state = {k: v for k, v in dense.state_dict().items() if ".mlp." not in k}
    sparse.load_state_dict(state, strict=False)
    for i, (d, s) in enumerate(zip(dense.blocks, sparse.blocks, strict=True)):
        if moe_cfg.is_moe_layer(i):
            router = s.mlp.router
            s.mlp = MoE.upcycle(d.mlp, moe_cfg, 32)
            s.mlp.router = router  # keep the (random, non-trivial) router
        else:
            s.mlp.load_state_dict(d.mlp.state_dict())
    return dense, sparse.eval()


@pytest.mark.parametrize("every", [1, 2])
def test_upcycled_moe_reproduces_dense_logits(generator, every):
    dense, sparse = moe_pair(every)
    assert len(sparse.moe_layers()) == 2 // every
    ids = torch.randint(0, V, (2, 12), generator=generator)
    out = sparse(ids)
    torch.testing.assert_close(out.logits, dense(ids).logits, atol=1e-5, rtol=1e-5)
    assert out.aux_loss is not None and out.aux_loss.item() > 0
    assert dense(ids).aux_loss is None


def test_causal_lm_loss_includes_the_moe_aux_loss(generator):
    _, sparse = moe_pair()
    batch = pad_collate([Example(np.arange(3, 12), np.ones(9, bool)), Example(np.arange(5, 9), np.ones(4, bool))], 0)
    loss, metrics = CausalLMObjective()(sparse, batch, generator)
    torch.testing.assert_close(loss, metrics["ce"] + metrics["aux_loss"])
    assert metrics["aux_loss"] > 0 and metrics["moe_max_load"] >= 1.0
    # padding is not routed: the padded row's aux loss equals the unpadded computation over real tokens
    counts = sum(int(m.last_stats.counts.sum()) for m in sparse.moe_layers())
    assert counts == 2 * 2 * (9 + 4)  # layers x top_k x real tokens
    sparse.train()
    loss.backward()
    router = sparse.moe_layers()[0].router.gate.weight
    assert router.grad is not None and router.grad.abs().sum() > 0


def test_moe_config_round_trips_through_yaml_dicts():
    cfg = from_dict(CodeGenConfig, {"vocab_size": 10, "d_model": 32, "n_heads": 4, "moe": {"n_experts": 4, "every": 2}})
    assert isinstance(cfg.moe, MoEConfig) and cfg.moe.every == 2
    assert from_dict(CodeGenConfig, {k: v for k, v in to_dict(cfg).items() if k != "kind"}) == cfg
    with pytest.raises(ConfigError, match="moe.top_k"):
        from_dict(CodeGenConfig, {"moe": {"top_k": "two"}})


def test_presets_mirror_codegen_sizes_on_the_meta_device():
    counts = {name: count_parameters(preset(name)) for name in ("codegen-350m", "codegen-2.7b", "codegen-16.1b")}
    assert counts["codegen-350m"] == pytest.approx(350e6, rel=0.03)
    assert counts["codegen-2.7b"] == pytest.approx(2.7e9, rel=0.04)
    assert counts["codegen-16.1b"] == pytest.approx(16.1e9, rel=0.01)
    assert set(PRESETS) >= {"codegen-6.1b", "tiny", "small"}
    model = build_model(preset("tiny", vocab_size=40))
    assert model(torch.zeros(1, 3, dtype=torch.long)).logits.shape == (1, 3, 40)
    with pytest.raises(KeyError, match="unknown preset"):
        preset("codegen-1t")
