"""Sparse mixture-of-experts feed-forward block: a drop-in replacement for ``layers.MLP``.

``MoE(router, experts)`` maps ``x (B, T, C) -> MoEOutput(y (B, T, C), aux_loss)``. The router is
injected (softmax top-k à la Mixtral, or Shazeer-2017 noisy top-k) and so are the experts (any
modules mapping ``(n, C) -> (n, C)``, normally ``layers.MLP``). Shapes: N routed tokens, E experts,
k experts per token.

Auxiliary losses (all computed in fp32 over the routed, i.e. non-padding, tokens):

* ``switch``: ``E * sum_i f_i * P_i`` with f_i the fraction of the N*k routing assignments sent to
  expert i (before capacity dropping) and P_i the mean router probability. Normalising f over N*k
  (not N as HF's ``load_balancing_loss_func`` does) makes the value 1.0 at perfect balance for any
  k; it equals HF's value / k and Switch's own loss for k = 1.
* ``importance``: CV^2 of ``sum_x G(x)`` (G the sparse gate weights), Shazeer 2017.
* ``load``: CV^2 of the per-expert load. Under noisy gating in training mode (and E > k) this is
  Shazeer's smooth estimator ``sum_x Phi((clean_i - kth_excluding(H, k, i)) / noise_std_i)``;
  otherwise (softmax gating, eval mode) it is the hard assignment count, which carries no gradient.
* ``z``: ST-MoE router z-loss ``mean(logsumexp(clean logits)^2)``.

The reported ``aux_loss`` is the coefficient-weighted sum; the parts are kept in ``last_stats``.
``reference_moe_forward`` is the plain per-expert loop kept as the oracle the fast path must match.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

GatingKind = Literal["softmax", "noisy_topk"]


@dataclass(frozen=True)
class MoEConfig:
    """How a transformer stack builds its MoE feed-forward blocks.

    Attributes:
        n_experts: experts per MoE block (E).
        top_k: experts per token (k), 1 <= k <= E.
        gating: ``softmax`` (Mixtral: softmax, top-k) or ``noisy_topk`` (Shazeer 2017).
        renormalize: softmax gating only: renormalise the k chosen probabilities to sum to 1
            (Mixtral). With k = 1 that makes every weight 1.0, so the LM loss sends no gradient to
            the router (only the aux losses train it); set False for Switch-style k = 1.
            Noisy top-k always renormalises (softmax over the kept logits).
        capacity_factor: None = dropless; else each expert takes at most
            ``ceil(capacity_factor * N * k / E)`` assignments and the rest are dropped.
        every: MoE in blocks i with ``i % every == every - 1`` (1 = every block, 2 = every 2nd).
        switch_coef, importance_coef, load_coef, z_coef: aux loss weights.
        noise_seed: seed of a router's own noise generator (used when no generator is passed).
    """

    n_experts: int = 4
    top_k: int = 2
    gating: GatingKind = "softmax"
    renormalize: bool = True
    capacity_factor: float | None = None
    every: int = 1
    switch_coef: float = 0.01
    importance_coef: float = 0.0
    load_coef: float = 0.0
    z_coef: float = 0.001
    noise_seed: int = 0

    def __post_init__(self) -> None:
        if self.n_experts < 1 or not 1 <= self.top_k <= self.n_experts:
            raise ValueError(
                f"need 1 <= top_k <= n_experts, got top_k={self.top_k}, n_experts={self.n_experts}"
            )
        if self.gating not in ("softmax", "noisy_topk"):
            raise ValueError(f"unknown gating {self.gating!r} (known: softmax, noisy_topk)")
        if self.capacity_factor is not None and self.capacity_factor <= 0:
            raise ValueError(f"capacity_factor must be > 0 or null, got {self.capacity_factor}")
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        coefs = (self.switch_coef, self.importance_coef, self.load_coef, self.z_coef)
        if min(coefs) < 0:
            raise ValueError("aux loss coefficients must be >= 0")

    def is_moe_layer(self, index: int) -> bool:
        """Whether block ``index`` (0-based) gets an MoE feed-forward."""
        return index % self.every == self.every - 1


@dataclass
class RouterOutput:
    """Routing decision for N tokens (all float tensors fp32 or fp64).

    Attributes:
        clean_logits: (N, E) ``x W_g``.
        logits: (N, E) logits used for selection (``clean + noise`` for noisy gating in training).
        probs: (N, E) softmax of ``logits``.
        experts: (N, k) chosen expert ids, best first (= top-k of ``logits``).
        weights: (N, k) combine weights of the chosen experts.
        noise_std: (N, E) ``softplus(x W_noise)`` for noisy gating, else None.
    """

    clean_logits: torch.Tensor
    logits: torch.Tensor
    probs: torch.Tensor
    experts: torch.Tensor
    weights: torch.Tensor
    noise_std: torch.Tensor | None = None


class Router(nn.Module):
    """Top-k router: ``softmax`` (Mixtral) or ``noisy_topk`` (Shazeer: H = xW_g + N(0,1)·softplus(xW_noise)).

    Noise is drawn only in training mode, from the ``generator`` passed to ``forward`` or else from
    the router's own generator seeded with ``seed`` (created lazily on the input's device; its
    state is ``noise_generator`` for checkpointing). Routing maths runs in fp32 with autocast off.
    ``gate``/``noise`` keep nn.Linear's init (the model's own init usually overwrites it); zero
    them for Shazeer's start, where routing is balanced and driven by noise alone.
    """

    def __init__(
        self,
        d_model: int,
        n_experts: int,
        top_k: int,
        gating: GatingKind = "softmax",
        renormalize: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"need 1 <= top_k <= n_experts, got {top_k}, {n_experts}")
        if gating not in ("softmax", "noisy_topk"):
            raise ValueError(f"unknown gating {gating!r} (known: softmax, noisy_topk)")
        self.n_experts, self.top_k, self.gating, self.renormalize = n_experts, top_k, gating, renormalize
        self.gate = nn.Linear(d_model, n_experts, bias=False)
        self.noise = nn.Linear(d_model, n_experts, bias=False) if gating == "noisy_topk" else None
        self.seed = seed
        self.noise_generator: torch.Generator | None = None

    def _noise(
        self, shape: torch.Size, device: torch.device, generator: torch.Generator | None
    ) -> torch.Tensor:
        if generator is None:
            if self.noise_generator is None or self.noise_generator.device != device:
                self.noise_generator = torch.Generator(device=device).manual_seed(self.seed)
            generator = self.noise_generator
        # Draw on the generator's device so a CPU generator also works for GPU activations.
        return torch.randn(shape, generator=generator, device=generator.device).to(device)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> RouterOutput:
        """Route ``x`` (N, C)."""
        dtype = torch.promote_types(x.dtype, torch.float32)  # fp32, or fp64 when x is fp64
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.to(dtype)
            clean = F.linear(xf, self.gate.weight.to(dtype))  # (N, E)
            noise_std = None
            logits = clean
            if self.noise is not None:
                noise_std = F.softplus(F.linear(xf, self.noise.weight.to(dtype)))  # (N, E)
                if self.training:
                    logits = clean + self._noise(clean.shape, clean.device, generator).to(dtype) * noise_std
            probs = logits.softmax(-1)
            top_logits, experts = logits.topk(self.top_k, dim=-1)  # (N, k)
            if self.noise is not None or self.renormalize:
                weights = top_logits.softmax(-1)  # == chosen probs / their sum
            else:
                weights = probs.gather(-1, experts)
        return RouterOutput(clean, logits, probs, experts, weights, noise_std)


def cv_squared(v: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation ``Var(v) / mean(v)^2`` (population variance); 0 for one item."""
    v = v.float() if v.dtype != torch.float64 else v
    if v.numel() <= 1:
        return v.new_zeros(())
    return v.var(unbiased=False) / (v.mean() ** 2 + 1e-10)


def switch_loss(probs: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """``E * sum_i f_i * P_i``; f over the N*k assignments, so 1.0 at perfect balance for any k."""
    n_experts = probs.shape[-1]
    f = torch.bincount(experts.reshape(-1), minlength=n_experts).to(probs.dtype) / experts.numel()
    return n_experts * (f * probs.mean(0)).sum()


def z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE router z-loss ``mean_x logsumexp(logits_x)^2``."""
    return torch.logsumexp(logits, dim=-1).pow(2).mean()


def expert_load(route: RouterOutput, training: bool) -> torch.Tensor:
    """(E,) per-expert load: Shazeer's smooth estimator under noisy training, else hard counts."""
    n, n_experts = route.logits.shape
    k = route.experts.shape[-1]
    if route.noise_std is None or not training or n_experts <= k:
        return torch.bincount(route.experts.reshape(-1), minlength=n_experts).to(route.logits.dtype)
    top = route.logits.topk(k + 1, dim=-1).values  # (N, k+1) noisy logits
    chosen = torch.zeros_like(route.logits, dtype=torch.bool).scatter_(1, route.experts, True)
    # kth_excluding(H, k, i): the k-th largest of the *other* experts' noisy logits, i.e. the
    # (k+1)-th overall if i is in the top k, else the k-th.
    threshold = torch.where(chosen, top[:, k : k + 1], top[:, k - 1 : k])
    std = route.noise_std.clamp_min(1e-9)  # softplus can underflow to 0 for very negative inputs
    return torch.special.ndtr((route.clean_logits - threshold) / std).sum(0)


def aux_losses(route: RouterOutput, training: bool) -> dict[str, torch.Tensor]:
    """Unweighted balancing losses ``switch``, ``importance``, ``load`` and ``z`` for one routing."""
    gates = torch.zeros_like(route.probs).scatter_(1, route.experts, route.weights)  # (N, E)
    return {
        "switch": switch_loss(route.probs, route.experts),
        "importance": cv_squared(gates.sum(0)),
        "load": cv_squared(expert_load(route, training)),
        "z": z_loss(route.clean_logits),
    }


def capacity_of(capacity_factor: float, n_tokens: int, top_k: int, n_experts: int) -> int:
    """Assignments one expert may take: ``ceil(capacity_factor * N * k / E)``."""
    return math.ceil(capacity_factor * n_tokens * top_k / n_experts)


def capacity_keep(experts: torch.Tensor, n_experts: int, capacity: int) -> torch.Tensor:
    """(N, k) bool: which assignments fit in their expert's capacity.

    Priority is slot-major, as in GShard/Switch: every token's first choice is queued before any
    second choice; within a slot, earlier tokens (flattened B*T order) go first.
    """
    n, k = experts.shape
    flat = experts.t().reshape(-1)  # (k*N,) slot-major queue order
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=n_experts)
    starts = counts.cumsum(0) - counts
    position = torch.empty_like(flat)
    position[order] = torch.arange(flat.numel(), device=flat.device) - starts[flat[order]]
    return (position < capacity).view(k, n).t()


def dispatch(
    x: torch.Tensor,
    experts: torch.Tensor,
    weights: torch.Tensor,
    keep: torch.Tensor | None,
    modules: Sequence[nn.Module],
) -> torch.Tensor:
    """Fast path: group assignments by expert with one stable sort, run each expert once, scatter back.

    Args:
        x: (N, C) tokens. experts, weights: (N, k). keep: (N, k) bool or None (keep all).
        modules: the E experts.
    Returns: (N, C) ``sum_j weights[:, j] * expert_{experts[:, j]}(x)`` over kept assignments.
    """
    n, k = experts.shape
    flat_e = experts.reshape(-1)  # token-major, so the stable sort keeps token order per expert
    flat_w = weights.reshape(-1)
    flat_tok = torch.arange(n, device=x.device).repeat_interleave(k)
    if keep is not None:
        kept = keep.reshape(-1)
        flat_e, flat_w, flat_tok = flat_e[kept], flat_w[kept], flat_tok[kept]
    order = torch.argsort(flat_e, stable=True)
    tokens, w = flat_tok[order], flat_w[order].to(x.dtype)
    counts = torch.bincount(flat_e, minlength=len(modules)).tolist()  # one host sync per block
    xs = x.index_select(0, tokens)  # (n_kept, C), gathered once
    out = torch.zeros_like(x)
    start = 0
    for module, count in zip(modules, counts, strict=True):
        if count:  # experts without tokens are skipped entirely
            rows = slice(start, start + count)
            out.index_add_(0, tokens[rows], module(xs[rows]) * w[rows, None])
        start += count
    return out


class MoEOutput(NamedTuple):
    """``y, aux = moe(x)``: y (B, T, C); aux the coefficient-weighted scalar auxiliary loss."""

    y: torch.Tensor
    aux_loss: torch.Tensor


@dataclass
class MoEStats:
    """Detached record of the last forward, for logging (tensors, so no device sync is forced).

    Attributes:
        counts: (E,) assignments routed to each expert (before capacity dropping).
        dropped: assignments dropped by the capacity limit.
        dropped_tokens: tokens whose every assignment was dropped (output = residual only).
        losses: unweighted aux losses by name.
    """

    counts: torch.Tensor
    dropped: torch.Tensor
    dropped_tokens: torch.Tensor
    losses: dict[str, torch.Tensor]


class MoE(nn.Module):
    """Sparse MoE feed-forward ``(B, T, C) -> MoEOutput(y (B, T, C), aux_loss)``.

    Args:
        router: a :class:`Router`.
        experts: E modules ``(n, C) -> (n, C)`` (normally ``layers.MLP``).
        shared: optional always-on expert added to every token's output.
        capacity_factor: None = dropless; else see :func:`capacity_of`. Dropped assignments add
            nothing (weights are not renormalised), so a fully dropped token outputs zero.
        coefs: aux loss weights by name (``switch``, ``importance``, ``load``, ``z``).
    """

    def __init__(
        self,
        router: Router,
        experts: Sequence[nn.Module],
        shared: nn.Module | None = None,
        capacity_factor: float | None = None,
        coefs: dict[str, float] | None = None,
    ):
        super().__init__()
        if len(experts) != router.n_experts:
            raise ValueError(f"router has {router.n_experts} experts but {len(experts)} were given")
        coefs = dict(coefs or {})
        unknown = set(coefs) - {"switch", "importance", "load", "z"}
        if unknown:
            raise ValueError(f"unknown aux loss names {sorted(unknown)}")
        self.router = router
        self.experts = nn.ModuleList(experts)
        self.shared = shared
        self.capacity_factor = capacity_factor
        self.coefs = coefs
        self.last_stats: MoEStats | None = None

    @classmethod
    def from_config(
        cls, cfg: MoEConfig, d_model: int, make_expert: Callable[[], nn.Module], seed: int | None = None
    ) -> MoE:
        """Build from ``cfg`` with fresh experts from ``make_expert``; ``seed`` overrides the noise seed."""
        router = Router(
            d_model,
            cfg.n_experts,
            cfg.top_k,
            cfg.gating,
            cfg.renormalize,
            seed=cfg.noise_seed if seed is None else seed,
        )
        coefs = {
            "switch": cfg.switch_coef,
            "importance": cfg.importance_coef,
            "load": cfg.load_coef,
            "z": cfg.z_coef,
        }
        return cls(router, [make_expert() for _ in range(cfg.n_experts)], None, cfg.capacity_factor, coefs)

    @classmethod
    def upcycle(cls, dense: nn.Module, cfg: MoEConfig, d_model: int, seed: int | None = None) -> MoE:
        """Sparse upcycling: every expert is a copy of the dense MLP ``dense`` (the router is fresh)."""
        return cls.from_config(cfg, d_model, lambda: copy.deepcopy(dense), seed)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> MoEOutput:
        """Args:
        x: (B, T, C).
        mask: optional (B, T) keep-mask (True/1 = real token). Padding is not routed: it gets zero
            output, takes no capacity and is left out of the aux losses and usage counts.
        generator: noise source for noisy gating in training mode.
        """
        B, T, C = x.shape
        flat = x.reshape(B * T, C)
        index = None
        if mask is not None:
            index = mask.reshape(B * T).nonzero().squeeze(1)
            flat = flat.index_select(0, index)  # (N, C)
        y, aux = self._route_and_mix(flat, generator)
        if index is not None:
            y = torch.zeros(B * T, C, dtype=y.dtype, device=y.device).index_copy(0, index, y)
        return MoEOutput(y.view(B, T, C), aux)

    def _route_and_mix(
        self, flat: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = flat.shape[0]
        route = self.router(flat, generator)
        keep = None
        if self.capacity_factor is not None and n:
            cap = capacity_of(self.capacity_factor, n, self.router.top_k, self.router.n_experts)
            keep = capacity_keep(route.experts, self.router.n_experts, cap)
        y = dispatch(flat, route.experts, route.weights, keep, self.experts)
        if self.shared is not None:
            y = y + self.shared(flat)
        if n:
            losses = aux_losses(route, self.training)
            aux = sum(self.coefs.get(name, 0.0) * value for name, value in losses.items())
        else:  # everything padded: nothing to balance
            losses, aux = {}, route.logits.new_zeros(())
        dropped = (~keep).sum() if keep is not None else torch.zeros((), dtype=torch.long, device=flat.device)
        dropped_tokens = (~keep).all(-1).sum() if keep is not None else torch.zeros_like(dropped)
        self.last_stats = MoEStats(
            counts=torch.bincount(route.experts.reshape(-1), minlength=self.router.n_experts).detach(),
            dropped=dropped.detach(),
            dropped_tokens=dropped_tokens.detach(),
            losses={name: value.detach() for name, value in losses.items()},
        )
        return y, aux


def reference_capacity_keep(experts: torch.Tensor, n_experts: int, capacity: int) -> torch.Tensor:
    """Oracle for :func:`capacity_keep`: plain Python queues, first choices of all tokens first."""
    n, k = experts.shape
    keep = torch.zeros(n, k, dtype=torch.bool)
    used = [0] * n_experts
    for slot in range(k):
        for token in range(n):
            e = int(experts[token, slot])
            if used[e] < capacity:
                keep[token, slot] = True
                used[e] += 1
    return keep.to(experts.device)


def reference_moe_forward(
    moe: MoE, x: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Test oracle: ``moe(x).y`` by a plain loop over experts (no sorting, no index_add)."""
    B, T, C = x.shape
    flat = x.reshape(B * T, C)
    route = moe.router(flat, generator)
    keep = torch.ones_like(route.experts, dtype=torch.bool)
    if moe.capacity_factor is not None:
        cap = capacity_of(moe.capacity_factor, B * T, moe.router.top_k, moe.router.n_experts)
        keep = reference_capacity_keep(route.experts, moe.router.n_experts, cap)
    out = torch.zeros_like(flat)
    for e, expert in enumerate(moe.experts):
        token, slot = torch.where((route.experts == e) & keep)  # a token picks expert e at most once
        if token.numel():
            out[token] += route.weights[token, slot, None].to(flat.dtype) * expert(flat[token])
    if moe.shared is not None:
        out = out + moe.shared(flat)
    return out.view(B, T, C)


__all__ = [
    "GatingKind",
    "MoE",
    "MoEConfig",
    "MoEOutput",
    "MoEStats",
    "Router",
    "RouterOutput",
    "aux_losses",
    "capacity_keep",
    "capacity_of",
    "cv_squared",
    "dispatch",
    "expert_load",
    "reference_capacity_keep",
    "reference_moe_forward",
    "switch_loss",
    "z_loss",
]
