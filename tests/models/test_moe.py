"""MoE block: routing, aux losses, capacity dropping, fast dispatch == per-expert loop, dense equivalence."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from nl2code.config import ConfigError, from_dict
from nl2code.models.layers import MLP
from nl2code.models.moe import (
    MoE,
    MoEConfig,
    Router,
    capacity_keep,
    capacity_of,
    cv_squared,
    dispatch,
    expert_load,
    reference_capacity_keep,
    reference_moe_forward,
    switch_loss,
    z_loss,
)

D, FF = 16, 32


def make_moe(
    gating: str = "softmax",
    k: int = 2,
    n_experts: int = 4,
    capacity: float | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    **cfg_kwargs,
) -> MoE:
    cfg = MoEConfig(n_experts=n_experts, top_k=k, gating=gating, capacity_factor=capacity, **cfg_kwargs)
    torch.manual_seed(seed)  # parameter init only; routing noise uses explicit generators
    moe = MoE.from_config(cfg, D, lambda: MLP(D, FF, "swiglu"))
    if gating == "noisy_topk":  # non-zero noise weights so noise_std differs per expert
        nn.init.normal_(moe.router.noise.weight, std=0.5)
    return moe.to(dtype)


def tokens(b: int = 3, t: int = 7, seed: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(b, t, D, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- routing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("gating", ["softmax", "noisy_topk"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_topk_selection_and_renormalisation(gating: str, k: int) -> None:
    router = make_moe(gating, k).router.eval()
    x = tokens().view(-1, D)
    route = router(x)
    expected = route.clean_logits.topk(k, dim=-1).indices  # eval: selection logits == clean logits
    assert torch.equal(route.experts, expected)
    torch.testing.assert_close(route.weights.sum(-1), torch.ones(x.shape[0]))
    chosen = route.probs.gather(-1, route.experts)
    torch.testing.assert_close(route.weights, chosen / chosen.sum(-1, keepdim=True))
    assert (route.weights[:, :-1] >= route.weights[:, 1:]).all()  # best first


def test_unnormalised_k1_keeps_router_gradient() -> None:
    x = tokens().view(-1, D)
    for renormalize, has_grad in ((True, False), (False, True)):
        router = make_moe("softmax", 1, renormalize=renormalize).router
        route = router(x)
        if not renormalize:
            torch.testing.assert_close(route.weights[:, 0], route.probs.max(-1).values)
        route.weights.sum().backward()
        grad = router.gate.weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == has_grad


def test_noise_only_in_training() -> None:
    router = make_moe("noisy_topk", 2).router
    x = tokens().view(-1, D)
    router.eval()
    a, b = router(x, torch.Generator().manual_seed(0)), router(x, torch.Generator().manual_seed(1))
    assert torch.equal(a.logits, a.clean_logits) and torch.equal(a.weights, b.weights)
    router.train()
    c = router(x, torch.Generator().manual_seed(0))
    d = router(x, torch.Generator().manual_seed(0))
    e = router(x, torch.Generator().manual_seed(1))
    assert not torch.allclose(c.logits, c.clean_logits)
    assert torch.equal(c.logits, d.logits) and not torch.equal(c.logits, e.logits)
    torch.testing.assert_close(c.clean_logits, a.clean_logits)
    # the noise is N(0,1) scaled per expert by softplus(x W_noise)
    eps = torch.randn(c.logits.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(c.logits, c.clean_logits + eps * c.noise_std)
    # without an explicit generator the router's own seeded one is used: reproducible per seed
    r1, r2 = copy.deepcopy(router), copy.deepcopy(router)
    assert torch.equal(r1(x).logits, r2(x).logits)


# --- aux losses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2])
def test_switch_loss_is_one_at_perfect_balance(k: int) -> None:
    n_experts = 4
    router = Router(n_experts, n_experts, k)
    with torch.no_grad():
        # token e_i has logits 3 for expert i, 2 for expert i+1, else 0: every token's
        # probabilities are a cyclic shift of one vector, so f and P are both uniform
        router.gate.weight.copy_(3 * torch.eye(n_experts) + 2 * torch.eye(n_experts).roll(1, 0))
    x = torch.eye(n_experts).repeat(5, 1)
    route = router(x)
    counts = torch.bincount(route.experts.reshape(-1), minlength=n_experts)
    assert (counts == counts[0]).all()
    torch.testing.assert_close(route.probs.mean(0), torch.full((n_experts,), 0.25))
    torch.testing.assert_close(switch_loss(route.probs, route.experts), torch.tensor(1.0))
    # and it grows when routing collapses onto one expert
    collapsed = switch_loss(
        torch.tensor([[0.7, 0.1, 0.1, 0.1]]).repeat(8, 1), torch.zeros(8, k, dtype=torch.long)
    )
    assert collapsed > 1.0


def test_z_loss_and_cv_hand_cases() -> None:
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    # logsumexp: log 2 and log 4
    torch.testing.assert_close(z_loss(logits), torch.tensor((math.log(2) ** 2 + math.log(4) ** 2) / 2))
    torch.testing.assert_close(cv_squared(torch.tensor([1.0, 3.0])), torch.tensor(0.25))  # var 1 / mean^2 4
    assert cv_squared(torch.tensor([2.0, 2.0, 2.0])) == 0 and cv_squared(torch.tensor([5.0])) == 0


def test_smooth_load_estimator() -> None:
    moe = make_moe("noisy_topk", 2)
    x = tokens().view(-1, D)
    route = moe.router.train()(x, torch.Generator().manual_seed(3))
    load = expert_load(route, training=True)
    # hand-computed sum_x Phi((clean_i - kth_excluding(H, k, i)) / std_i)
    expected = torch.zeros(4)
    for h, clean, std in zip(route.logits, route.clean_logits, route.noise_std, strict=True):
        for i in range(4):
            others = torch.cat([h[:i], h[i + 1 :]]).sort(descending=True).values
            expected[i] += torch.special.ndtr((clean[i] - others[1]) / std[i])
    torch.testing.assert_close(load, expected)
    assert load.requires_grad and 0 < load.sum() < x.shape[0] * 4
    # eval mode / softmax gating fall back to hard counts
    hard = expert_load(route, training=False)
    assert torch.equal(hard, torch.bincount(route.experts.reshape(-1), minlength=4).float())


def test_aux_loss_is_weighted_sum_and_backprops() -> None:
    moe = make_moe("noisy_topk", 2, importance_coef=0.1, load_coef=0.1)
    out = moe(tokens(), generator=torch.Generator().manual_seed(0))
    stats = moe.last_stats
    expected = sum(
        c * stats.losses[n] for n, c in (("switch", 0.01), ("importance", 0.1), ("load", 0.1), ("z", 0.001))
    )
    torch.testing.assert_close(out.aux_loss.detach(), expected)
    out.aux_loss.backward()
    assert moe.router.gate.weight.grad.abs().sum() > 0 and moe.router.noise.weight.grad.abs().sum() > 0
    assert int(stats.counts.sum()) == 3 * 7 * 2 and int(stats.dropped) == 0


# --- capacity ------------------------------------------------------------------------------------


def test_capacity_drops_over_capacity_tokens_in_order() -> None:
    experts = torch.tensor([[0], [0], [1], [0], [0], [1]])  # k = 1, E = 2, capacity 2
    keep = capacity_keep(experts, 2, 2)
    assert keep.squeeze(1).tolist() == [True, True, True, False, False, True]
    # k = 2: all first choices are queued before any second choice
    experts = torch.tensor([[1, 0], [0, 1], [0, 1], [1, 0]])
    keep = capacity_keep(experts, 2, 2)
    assert keep.tolist() == [[True, False], [True, False], [True, False], [True, False]]
    assert capacity_of(1.0, 6, 1, 2) == 3 and capacity_of(1.25, 10, 2, 4) == 7


def test_capacity_matches_python_queues() -> None:
    g = torch.Generator().manual_seed(0)
    for k, n_experts in ((1, 3), (2, 4), (3, 5)):
        experts = torch.stack([torch.randperm(n_experts, generator=g)[:k] for _ in range(40)])
        for cap in (1, 5, 17, 100):
            assert torch.equal(
                capacity_keep(experts, n_experts, cap), reference_capacity_keep(experts, n_experts, cap)
            )


def test_moe_counts_drops_and_dropped_tokens_pass_through_as_zero() -> None:
    moe = make_moe("softmax", 1, n_experts=2, capacity=0.5)
    with torch.no_grad():  # everyone prefers expert 0
        moe.router.gate.weight.copy_(torch.stack([torch.zeros(D), torch.full((D,), -1e3)]))
    x = tokens(1, 8).abs()
    out = moe(x)
    stats = moe.last_stats
    cap = capacity_of(0.5, 8, 1, 2)  # 2
    assert stats.counts.tolist() == [8, 0] and int(stats.dropped) == 8 - cap == int(stats.dropped_tokens)
    expected = moe.experts[0](x[0, :cap])  # weight 1 after renormalisation
    torch.testing.assert_close(out.y[0, :cap], expected)
    assert torch.equal(out.y[0, cap:], torch.zeros(8 - cap, D))


# --- fast dispatch == per-expert loop ------------------------------------------------------------


@pytest.mark.parametrize("gating", ["softmax", "noisy_topk"])
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("capacity", [None, 0.75])
@pytest.mark.parametrize("train", [False, True])
def test_fast_dispatch_matches_loop(gating: str, k: int, capacity: float | None, train: bool) -> None:
    for dtype in (torch.float32, torch.float64):
        moe = make_moe(gating, k, capacity=capacity, dtype=dtype).train(train)
        x = tokens(4, 9, dtype=dtype)
        fast = moe(x, generator=torch.Generator().manual_seed(5)).y
        slow = reference_moe_forward(moe, x, generator=torch.Generator().manual_seed(5))
        if dtype == torch.float64:
            assert torch.equal(fast, slow)
        else:
            torch.testing.assert_close(fast, slow, rtol=1e-6, atol=1e-6)
        if capacity is not None:
            assert int(moe.last_stats.dropped) > 0  # the capacity path was exercised


def test_dispatch_gradients_match_loop() -> None:
    moe = make_moe("softmax", 2, capacity=1.0, dtype=torch.float64)
    x = tokens(2, 6, dtype=torch.float64)
    grads = []
    for fn in (lambda: moe(x).y, lambda: reference_moe_forward(moe, x)):
        moe.zero_grad()
        (fn() ** 2).sum().backward()
        grads.append([p.grad.clone() for p in moe.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_dispatch_skips_unused_experts() -> None:
    calls = []
    modules = [nn.Identity() for _ in range(3)]
    for i, m in enumerate(modules):
        m.register_forward_hook(lambda *_, i=i: calls.append(i))
    x = torch.randn(4, D)
    y = dispatch(x, torch.tensor([[2], [0], [2], [0]]), torch.ones(4, 1), None, modules)
    assert calls == [0, 2] and torch.equal(y, x)


# --- drop-in properties --------------------------------------------------------------------------


@pytest.mark.parametrize("gating", ["softmax", "noisy_topk"])
@pytest.mark.parametrize("k", [1, 2])
def test_identical_experts_reproduce_dense_mlp(gating: str, k: int) -> None:
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(0)
        dense = MLP(D, FF, "swiglu").to(dtype)
        moe = MoE.upcycle(dense, MoEConfig(n_experts=4, top_k=k, gating=gating), D).to(dtype).train()
        x = tokens(dtype=dtype)
        y = moe(x, generator=torch.Generator().manual_seed(0)).y
        expected = dense(x)
        # Not bitwise: BLAS results depend on how many rows an expert receives (its GEMM blocking),
        # so MLP(x[rows]) and MLP(x)[rows] differ by ~1 ulp; measured max |diff| ~1e-7 fp32, ~1e-16 fp64.
        tol = 1e-6 if dtype == torch.float32 else 1e-13
        torch.testing.assert_close(y, expected, rtol=0, atol=tol)
        torch.testing.assert_close(moe.last_stats.counts.sum(), torch.tensor(x.shape[0] * x.shape[1] * k))


def test_padding_mask_excludes_tokens() -> None:
    moe = make_moe("softmax", 2, capacity=1.0)
    x = tokens(2, 5)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    out = moe(x, mask=mask)
    assert out.y.shape == x.shape and torch.equal(out.y[0, 3:], torch.zeros(2, D))
    assert int(moe.last_stats.counts.sum()) == 8 * 2
    real = torch.cat([x[0, :3], x[1]])[None]
    torch.testing.assert_close(out.y[mask], moe(real).y[0])
    empty = moe(x, mask=torch.zeros(2, 5, dtype=torch.bool))
    assert torch.equal(empty.y, torch.zeros_like(x)) and empty.aux_loss == 0


def test_moe_trains_and_shapes() -> None:
    moe = make_moe("noisy_topk", 2, importance_coef=0.1, load_coef=0.1)
    opt = torch.optim.Adam(moe.parameters(), lr=1e-2)
    x, target = tokens(4, 8), tokens(4, 8, seed=9)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(20):
        y, aux = moe(x, generator=g)
        loss = ((y - target) ** 2).mean()
        opt.zero_grad()
        (loss + aux).backward()
        opt.step()
        losses.append(loss.item())
    assert y.shape == x.shape and losses[-1] < 0.8 * losses[0]


def test_config_validation_and_yaml() -> None:
    cfg = from_dict(MoEConfig, {"n_experts": 8, "top_k": 2, "gating": "noisy_topk", "every": 2})
    assert [cfg.is_moe_layer(i) for i in range(4)] == [False, True, False, True]
    for bad in ({"top_k": 5}, {"gating": "hash"}, {"capacity_factor": 0}, {"every": 0}, {"z_coef": -1}):
        with pytest.raises(ConfigError):
            from_dict(MoEConfig, bad)
    with pytest.raises(ValueError, match="experts"):
        MoE(Router(D, 3, 1), [MLP(D, FF)])
