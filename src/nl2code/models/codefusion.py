"""CodeFusion: an NL encoder, a diffusion denoiser over code embeddings, a decoder and a head.

codefusion.md §2: encoder ``E`` over the utterance; trainable code embedding ``L`` (``x_0 = L(y)``);
denoiser ``N`` (full self-attention over ``x_t``, cross-attention to ``E(s)``, conditioned on ``t``);
decoder ``D`` (full self-attention over the denoised embeddings, cross-attention to ``E(s)``); head
``H`` (one linear layer to the vocabulary). The module is pure: noise, timesteps and the reverse loop
live in ``nl2code.diffusion`` / ``nl2code.sampling``; losses in ``nl2code.objectives.diffusion``.

Shapes: B batch, S utterance length, N code length, D model width, E diffusion (embedding) width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from nl2code.diffusion.gaussian import GaussianScheduler, PredictionType
from nl2code.diffusion.schedules import alphas_cumprod
from nl2code.models.copy import CopyHead
from nl2code.models.layers import (
    MLP,
    Attention,
    Block,
    MLPKind,
    RMSNorm,
    RotaryEmbedding,
    init_normal_,
    residual_std,
)
from nl2code.models.outputs import ModelOutput
from nl2code.models.t5_encoder import T5Encoder, T5EncoderConfig


@dataclass(frozen=True)
class CodeFusionConfig:
    """Architecture (and the diffusion process it is trained for) of a :class:`CodeFusion`.

    Attributes:
        vocab_size: token vocabulary, shared by utterance and code; 0 = take it from the tokenizer.
        d_model: transformer width of E, N and D.
        n_heads: attention heads; ``d_model / n_heads`` must be even (rotary positions).
        d_ff: MLP width; 0 = ``4 * d_model``.
        mlp: ``gelu`` or ``swiglu``.
        encoder_layers: depth of E (paper: CodeT5-small's 6).
        denoiser_layers: depth of N (paper: 10).
        decoder_layers: depth of D (paper: 6); 0 drops D, giving the GENIE-style model whose head
            reads the denoised embeddings directly (the "grounding"/"clamping" baselines).
        embed_dim: width of the diffusion space (``L``); 0 = ``d_model`` (§2 assumes 512).
        code_length: n, the fixed code length every sample is padded to (paper: 128).
        max_nl_length: longest utterance; also the length of the noise that replaces ``E(s)`` in
            unconditional pre-training.
        num_timesteps: T of the diffusion process the model is trained for (paper: 1200).
        schedule: noise schedule, ``sqrt`` (paper), ``linear`` or ``cosine``.
        prediction: what N outputs: ``sample`` (``x_0``) or ``epsilon``; see :func:`scheduler_for`.
        self_condition: N also reads its previous ``x_0`` estimate (self-conditioning, Chen et al.
            2022, "Analog Bits"); not in the paper. Trained on half the batches with the model's own
            detached estimate, so at sampling time each step refines the last instead of restarting
            from a blurred mean (a short CPU run otherwise degrades with more steps).
        x0_skip: (``prediction="sample"`` only) N predicts ``x_0`` through a skip path, EDM-style
            preconditioning for a variance-preserving process: ``x^_0 = c_skip(t) x_t + c_out(t) F``
            with ``c_skip = sqrt(ab) s^2 / (ab s^2 + 1 - ab)`` (the posterior mean of ``x_0`` under a
            Gaussian prior of variance ``s^2``, ``s^2`` = mean square of ``L``'s entries) and ``c_out``
            the matching posterior std. At small t the network only corrects a copy of ``x_t``; without
            it the stack cannot copy (issue #18: rounding x_t at t = 100 kept 88.5% of tokens, the
            denoiser's x^_0 64.6%).
        score_interpolation: N outputs scores over the vocabulary (through H) and ``x^_0`` is their
            softmax-weighted mean of ``L``'s rows (CDCD's score interpolation, Dieleman et al. 2022; not
            in the paper); the objective trains those scores with a cross-entropy instead of the MSE
            term. Needs ``prediction="sample"`` and no ``x0_skip``. Every ``x^_0`` lies in the convex
            hull of the embeddings, so it never leaves the region D and H were trained on.
        decoder_skip: D is residual around its input, ``D_s = x^_0 + D(x^_0)``, so an untrained D
            starts as the identity and only learns corrections (issue #18: on Bash, H(D(L(y))) got
            97.6% of tokens right while plain nearest-embedding rounding of ``L(y)`` gets 100%).
        distance_head: H scores token v by ``-||h - L_v||^2`` (up to a per-position constant; plus H's
            bias), i.e. the tied head rounds to the nearest embedding, as Diffusion-LM's rounding does,
            instead of by the dot product ``h . L_v``, which favours long embeddings (the tied head on
            clean ``L(y)`` alone: 97.7% of Bash tokens). Needs ``tie_head``.
        copy_head: the final token distribution mixes H's softmax with a pointer over the context tokens
            (the utterance; the masked code in CPD), gated per position from D's last hidden state
            (``nl2code.models.copy``, as the AR model's ``copy_head``; not in the paper): a value of the
            request is copied, not recalled from L. Needs a decoder. Without context ids (unconditional
            pre-training) H alone scores. See :meth:`CodeFusion.decode_logits`.
        tie_head: H's weight is ``L``'s (plus a bias), as in GENIE (§8, §10.9); keeps ``L`` from
            collapsing, since the cross-entropy then pushes token embeddings apart.
        pad_id: the padding token; code is padded with it to ``code_length`` (§2).
        dropout: residual and attention dropout during training.
        norm_eps: RMSNorm epsilon.
        init_std: normal init std of linear layers.
        embed_init_std: init std of ``L``; 1.0 matches the unit-variance Gaussian noise.
        encoder_init: a local T5/CodeT5 checkpoint folder: E becomes that checkpoint's encoder
            (``nl2code train`` reads ``t5_encoder`` from its config.json) and training starts from its
            weights (the paper's setup). Its tokenizer serves both sides: set ``tokenizer.path`` to it.
        t5_encoder: E's shape when it is a T5 encoder (filled from ``encoder_init``); its ``d_model``
            must equal ``d_model``. null = nl2code's own encoder of ``encoder_layers`` blocks.
    """

    vocab_size: int = 0
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 0
    mlp: MLPKind = "gelu"
    encoder_layers: int = 6
    denoiser_layers: int = 10
    decoder_layers: int = 6
    embed_dim: int = 0
    code_length: int = 128
    max_nl_length: int = 128
    num_timesteps: int = 1200
    schedule: Literal["sqrt", "linear", "cosine"] = "sqrt"
    prediction: PredictionType = "sample"
    self_condition: bool = False
    x0_skip: bool = False
    score_interpolation: bool = False
    decoder_skip: bool = False
    distance_head: bool = False
    copy_head: bool = False
    tie_head: bool = True
    pad_id: int = 0
    dropout: float = 0.0
    norm_eps: float = 1e-5
    init_std: float = 0.02
    embed_init_std: float = 1.0
    encoder_init: str | None = None
    t5_encoder: T5EncoderConfig | None = None

    def __post_init__(self) -> None:
        if self.t5_encoder is not None and self.t5_encoder.d_model != self.d_model:
            raise ValueError(
                f"the T5 encoder's d_model is {self.t5_encoder.d_model}; set d_model to it (got {self.d_model})"
            )
        for name in ("d_model", "n_heads", "denoiser_layers", "code_length", "max_nl_length", "num_timesteps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("vocab_size", "d_ff", "encoder_layers", "decoder_layers", "embed_dim", "pad_id"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model {self.d_model} / n_heads {self.n_heads} must be an even integer (rotary)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.distance_head and not self.tie_head:
            raise ValueError("distance_head needs tie_head (it measures distances to L's rows)")
        if self.x0_skip and self.prediction != "sample":
            raise ValueError("x0_skip needs prediction='sample'")
        if self.copy_head and self.decoder_layers == 0:
            raise ValueError("copy_head needs a decoder (decoder_layers > 0): the pointer reads D's hidden state")
        if self.score_interpolation and (self.prediction != "sample" or self.x0_skip):
            raise ValueError("score_interpolation needs prediction='sample' and x0_skip off")
        if self.vocab_size and self.pad_id >= self.vocab_size:
            raise ValueError(f"pad_id {self.pad_id} is outside the vocabulary of {self.vocab_size}")

    @property
    def ff_width(self) -> int:
        return self.d_ff or 4 * self.d_model

    @property
    def diffusion_dim(self) -> int:
        return self.embed_dim or self.d_model


# Presets. "codefusion-75m" is the paper's shape (§2; vocab from the tokenizer, CodeT5's is 32,100).
# The diffusion width is not stated (§2); we use GENIE's 128 (§8) rather than the full 512 because
# narrow diffusion spaces learn the high-noise, utterance-driven regime much faster: on the tiny
# overfit test (d = 64) sampling reached 1/32 exact matches after 500 steps with E = 64, but 29/32
# (E = 16) and 32/32 (E = 8) after 600.
# The small presets train on two CPU cores in minutes; "codefusion-mini" is configs/codefusion/*.yaml's
# shape (benchmarks/codefusion_results.py trains it on one core per language).
PRESETS: dict[str, CodeFusionConfig] = {
    "codefusion-75m": CodeFusionConfig(embed_dim=128),
    "codefusion-small": CodeFusionConfig(
        d_model=256, n_heads=4, encoder_layers=3, denoiser_layers=4, decoder_layers=3, embed_dim=16,
        code_length=64, max_nl_length=64,
    ),
    "codefusion-mini": CodeFusionConfig(
        d_model=128, n_heads=4, encoder_layers=2, denoiser_layers=3, decoder_layers=2, embed_dim=16,
        code_length=64, max_nl_length=64, self_condition=True,
    ),
    "codefusion-tiny": CodeFusionConfig(
        d_model=64, n_heads=4, encoder_layers=2, denoiser_layers=2, decoder_layers=2, embed_dim=8,
        code_length=64, max_nl_length=64,
    ),
}  # fmt: skip


def preset(name: str, **overrides) -> CodeFusionConfig:
    """The preset config ``name`` with ``overrides`` applied (e.g. ``vocab_size=8192``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown CodeFusion preset {name!r} (known: {', '.join(PRESETS)})")
    return replace(PRESETS[name], **overrides)


def scheduler_for(cfg: CodeFusionConfig, eta: float = 0.0) -> GaussianScheduler:
    """The diffusion scheduler matching how a model with config ``cfg`` is trained and sampled.

    Callers pass :meth:`CodeFusion.x0_bound` as ``to_x0``'s ``clip`` (the bound moves with ``L``)."""
    return GaussianScheduler(cfg.num_timesteps, cfg.schedule, cfg.prediction, eta=eta)


# -- building blocks ------------------------------------------------------------------------------
class CrossAttention(nn.Module):
    """Multi-head attention from ``x`` (B, N, D) to a context (B, S, D) through SDPA, no positions."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        self.n_heads, self.head_dim, self.dropout = n_heads, d_model // n_heads, dropout
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.kv = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor | None) -> torch.Tensor:
        """``ctx_mask``: bool (B, 1, 1, S), True = may attend."""
        B, N, D = x.shape
        q = self.q(x).view(B, N, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, N, Hd)
        k, v = self.kv(ctx).view(B, ctx.shape[1], 2, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=ctx_mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, N, Hd)
        return self.out(y.transpose(1, 2).reshape(B, N, D))


class FusionBlock(nn.Module):
    """Pre-norm block of N and D: bidirectional self-attention, cross-attention to E(s), MLP."""

    def __init__(self, cfg: CodeFusionConfig):
        super().__init__()
        d = cfg.d_model
        self.self_norm, self.cross_norm, self.mlp_norm = (RMSNorm(d, cfg.norm_eps) for _ in range(3))
        self.attn = Attention(d, cfg.n_heads, cfg.dropout)
        self.cross = CrossAttention(d, cfg.n_heads, cfg.dropout)
        self.mlp = MLP(d, cfg.ff_width, cfg.mlp)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin, self_mask, ctx, ctx_mask) -> torch.Tensor:
        x = x + self.drop(self.attn(self.self_norm(x), cos, sin, self_mask, is_causal=False))
        x = x + self.drop(self.cross(self.cross_norm(x), ctx, ctx_mask))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of the integer timestep, then Linear-SiLU-Linear (as GENIE, §8)."""

    def __init__(self, d_model: int, freq_dim: int = 128):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, d_model), nn.SiLU(), nn.Linear(d_model, d_model))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` (B,) -> (B, D)."""
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        angles = t.float()[:, None] * freqs[None]  # (B, half)
        feats = torch.cat([angles.cos(), angles.sin()], dim=-1)
        return self.mlp(feats.to(self.mlp[0].weight.dtype))


def key_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, T) keep-mask -> bool (B, 1, 1, T) SDPA key mask; position 0 always kept (no NaN rows)."""
    if mask is None:
        return None
    keep = mask.bool().clone()
    keep[:, 0] = True
    return keep[:, None, None, :]


class _Stack(nn.Module):
    """Input projection E->D plus learned absolute positions, FusionBlocks, a final norm, and a
    projection back to E; the shared shape of N and D.

    The absolute positions matter: rotary attention is only relative, and at high noise every
    position of ``x_t`` looks alike, so without them position i cannot know it must emit token i
    (GENIE adds learned position embeddings to ``x_t`` too, §8 / §10.6).
    """

    def __init__(self, cfg: CodeFusionConfig, n_layers: int, in_dim: int | None = None):
        super().__init__()
        self.proj_in = nn.Linear(in_dim or cfg.diffusion_dim, cfg.d_model)
        self.pos = nn.Embedding(cfg.code_length, cfg.d_model)
        self.blocks = nn.ModuleList(FusionBlock(cfg) for _ in range(n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.proj_out = nn.Linear(cfg.d_model, cfg.diffusion_dim)

    def forward(self, h, cos, sin, self_mask, ctx, ctx_mask, add: torch.Tensor | None = None, with_hidden=False):  # noqa: ANN001
        """(B, N, E) out, or (out, the normed (B, N, D) hidden state it was projected from) ``with_hidden``."""
        x = self.proj_in(h) + self.pos.weight[: h.shape[1]]
        if add is not None:
            x = x + add
        for block in self.blocks:
            x = block(x, cos, sin, self_mask, ctx, ctx_mask)
        x = self.norm(x)
        return (self.proj_out(x), x) if with_hidden else self.proj_out(x)


# -- the model ------------------------------------------------------------------------------------
class CodeFusion(nn.Module):
    """CodeFusion network; see the module docstring. Components: ``encoder``, ``code_embed`` (L),
    ``denoiser`` (N), ``decoder`` (D, None when ``decoder_layers == 0``) and ``head`` (H)."""

    def __init__(self, cfg: CodeFusionConfig, generator: torch.Generator | None = None):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("CodeFusionConfig.vocab_size must be resolved (> 0) before building the model")
        self.cfg = cfg
        d, e = cfg.d_model, cfg.diffusion_dim
        if cfg.encoder_init is not None and cfg.t5_encoder is None:
            raise ValueError(
                "model.encoder_init needs model.t5_encoder (nl2code train reads it from the "
                "checkpoint's config.json; in code: nl2code.hf.t5.read_config)"
            )
        self.t5 = T5Encoder(cfg.t5_encoder) if cfg.t5_encoder is not None else None
        own = self.t5 is None  # a T5 encoder replaces embedding, blocks and norm of E
        self.nl_embed = nn.Embedding(cfg.vocab_size, d) if own else None
        self.encoder = nn.ModuleList(
            Block(d, cfg.n_heads, cfg.ff_width, cfg.mlp, cfg.dropout, cfg.norm_eps)
            for _ in range(cfg.encoder_layers if own else 0)
        )
        self.encoder_norm = RMSNorm(d, cfg.norm_eps) if own else None
        self.code_embed = nn.Embedding(cfg.vocab_size, e)
        self.time_embed = TimestepEmbedding(d)
        self.denoiser = _Stack(cfg, cfg.denoiser_layers, e * (2 if cfg.self_condition else 1))
        self.decoder = _Stack(cfg, cfg.decoder_layers) if cfg.decoder_layers > 0 else None
        self.head = nn.Linear(e, cfg.vocab_size, bias=True)
        self.copy = CopyHead(d) if cfg.copy_head else None
        if cfg.tie_head:
            self.head.weight = self.code_embed.weight
        self.rotary = RotaryEmbedding(d // cfg.n_heads, max(cfg.code_length, cfg.max_nl_length))
        if cfg.x0_skip:
            ab = alphas_cumprod(cfg.schedule, cfg.num_timesteps).float()
            self.register_buffer("alpha_bar", ab, persistent=False)
        self.init_weights(generator)

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise every weight from ``generator`` (deterministic given its seed)."""
        for module in self.modules():
            init_normal_(module, self.cfg.init_std, generator)
            if isinstance(module, RMSNorm):
                module.weight.fill_(1.0)
        nn.init.normal_(self.code_embed.weight, 0.0, self.cfg.embed_init_std, generator=generator)
        # Residual-stream writers start small (GPT-2), per stack depth.
        stacks = [(self.encoder, self.cfg.encoder_layers), (self.denoiser.blocks, self.cfg.denoiser_layers)]
        if self.decoder is not None:
            stacks.append((self.decoder.blocks, self.cfg.decoder_layers))
        for blocks, depth in stacks:
            std = residual_std(self.cfg.init_std, max(depth, 1))
            for block in blocks:
                writers = [block.attn.out, block.mlp.down] + ([block.cross.out] if hasattr(block, "cross") else [])
                for lin in writers:
                    nn.init.normal_(lin.weight, 0.0, std, generator=generator)

    def _rotary(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rotary(torch.arange(n, device=device))

    # -- components -----------------------------------------------------------------------------
    def encode(self, nl_ids: torch.Tensor, nl_mask: torch.Tensor | None = None) -> torch.Tensor:
        """E: utterance ids (B, S) -> E(s) (B, S, D). ``nl_mask`` (B, S) True on real tokens."""
        length = nl_ids.shape[1]
        if length > self.cfg.max_nl_length:
            raise ValueError(f"utterance length {length} exceeds max_nl_length {self.cfg.max_nl_length}")
        if self.t5 is not None:
            return self.t5(nl_ids, nl_mask)
        cos, sin = self._rotary(length, nl_ids.device)
        mask = key_mask(nl_mask)
        x = self.nl_embed(nl_ids)
        for block in self.encoder:
            x = block(x, cos, sin, mask, is_causal=False)
        return self.encoder_norm(x)

    def null_request(self, rows: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The empty request of classifier-free guidance: one visible pad token per row, ids and mask (rows, 1).
        A row whose utterance is all pad but its first position encodes to the same E(s) at that position."""
        ids = torch.full((rows, 1), self.cfg.pad_id, dtype=torch.long, device=device)
        return ids, torch.ones((rows, 1), dtype=torch.bool, device=device)

    def embed_code(self, code_ids: torch.Tensor) -> torch.Tensor:
        """L: code ids (B, N) -> x_0 (B, N, E)."""
        return self.code_embed(code_ids)

    def denoise_scores(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        enc: torch.Tensor,
        enc_mask: torch.Tensor | None = None,
        code_mask: torch.Tensor | None = None,
        x0_prev: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """N's token scores (B, N, V) under ``score_interpolation``, from :meth:`denoise`'s arguments; it
        returns their interpolation."""
        if not self.cfg.score_interpolation:
            raise ValueError("denoise_scores needs model.score_interpolation")
        return self.logits(self._stack_out(x_t, t, enc, enc_mask, code_mask, x0_prev))

    def interpolate(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores (B, N, V) -> the expected embedding ``softmax(scores) @ L`` (B, N, E)."""
        probs = scores.float().softmax(-1)
        return (probs @ self.code_embed.weight.float()).to(scores.dtype)

    def denoise(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        enc: torch.Tensor,
        enc_mask: torch.Tensor | None = None,
        code_mask: torch.Tensor | None = None,
        x0_prev: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """N: noisy embeddings (B, N, E) at timesteps ``t`` (B,) -> ``x_0`` or ``eps`` (B, N, E).

        Which of the two depends on ``cfg.prediction``; the scheduler's ``to_x0`` converts.
        ``code_mask`` (B, N) hides code positions from self-attention (None = all visible, the
        normal case: code is padded to ``code_length`` and pad positions are part of the sample).
        ``x0_prev`` (B, N, E): the previous ``x_0`` estimate for a self-conditioned model (None =
        zeros, the first step); ignored otherwise. Under ``score_interpolation`` the ``x_0`` estimate is
        the interpolation of :meth:`denoise_scores`.
        """
        out = self._stack_out(x_t, t, enc, enc_mask, code_mask, x0_prev)
        if self.cfg.score_interpolation:
            return self.interpolate(self.logits(out))
        if not self.cfg.x0_skip:
            return out
        ab = self.alpha_bar[t.long()].to(x_t.dtype)[:, None, None]  # (B, 1, 1)
        s2 = self.code_embed.weight.detach().pow(2).mean().to(x_t.dtype)
        denom = ab * s2 + 1 - ab
        return (ab.sqrt() * s2 / denom) * x_t + (s2 * (1 - ab) / denom).sqrt() * out

    def _stack_out(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        enc: torch.Tensor,
        enc_mask: torch.Tensor | None,
        code_mask: torch.Tensor | None,
        x0_prev: torch.Tensor | None,
    ) -> torch.Tensor:
        """N's stack on (x_t [, x0_prev]) with the timestep added: (B, N, E) before any skip or head."""
        self._check_code_len(x_t.shape[1])
        x_in = x_t
        if self.cfg.self_condition:
            x_in = torch.cat([x_t, torch.zeros_like(x_t) if x0_prev is None else x0_prev], dim=-1)
        cos, sin = self._rotary(x_t.shape[1], x_t.device)
        time = self.time_embed(t)[:, None, :]  # (B, 1, D), added to every position (§10.6)
        return self.denoiser(x_in, cos, sin, key_mask(code_mask), enc, key_mask(enc_mask), add=time)

    @torch.no_grad()
    def x0_bound(self) -> float:
        """The largest entry of ``L`` in absolute value: every gold ``x_0`` lies in this box, so the
        samplers and the objective clip ``x^_0`` to it (bounded at t = T-1 for any parameterisation)."""
        return float(self.code_embed.weight.abs().max())

    def decode(
        self,
        x0: torch.Tensor,
        enc: torch.Tensor,
        enc_mask: torch.Tensor | None = None,
        code_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """D: denoised embeddings (B, N, E) -> D_s (B, N, E); identity when there is no decoder."""
        return x0 if self.decoder is None else self._decode(x0, enc, enc_mask, code_mask)[0]

    def _decode(self, x0, enc, enc_mask, code_mask) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
        """(D_s, D's last normed hidden state (B, N, D)); needs a decoder."""
        self._check_code_len(x0.shape[1])
        cos, sin = self._rotary(x0.shape[1], x0.device)
        out, state = self.decoder(x0, cos, sin, key_mask(code_mask), enc, key_mask(enc_mask), with_hidden=True)
        return (x0 + out if self.cfg.decoder_skip else out), state

    def decode_logits(
        self,
        x0: torch.Tensor,
        enc: torch.Tensor,
        enc_mask: torch.Tensor | None = None,
        ctx_ids: torch.Tensor | None = None,
        code_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(D_s, token scores (B, N, V)) of ``H(D(x0))``. With a copy head and the context's token ids
        ``ctx_ids`` (B, S) the scores are the log-probabilities of the copy mixture (every context position
        visible to every code position); otherwise H's logits."""
        if not self.copies(ctx_ids):
            hidden = self.decode(x0, enc, enc_mask, code_mask)
            return hidden, self.logits(hidden)
        hidden, state = self._decode(x0, enc, enc_mask, code_mask)
        keep = None if enc_mask is None else enc_mask.bool()
        logp = self.copy(self.logits(hidden), state, self.copy.key(enc), ctx_ids, keep, first_pos=None)
        return hidden, logp

    def copies(self, ctx_ids: torch.Tensor | None) -> bool:
        """Whether :meth:`decode_logits` scores with the copy mixture: a copy head and context ids
        (the config guarantees a decoder)."""
        return self.copy is not None and ctx_ids is not None

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """H: (B, N, E) -> (B, N, V); see ``distance_head`` for the distance form."""
        if not self.cfg.distance_head:
            return self.head(hidden)
        w = self.head.weight  # = L
        return 2 * hidden @ w.t() - w.pow(2).sum(-1) + self.head.bias

    @torch.no_grad()
    def nearest_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Ids (B, N) of the L2-nearest rows of ``L`` ("grounding"/"clamping" rounding, §7 Table 4)."""
        w = self.code_embed.weight  # (V, E)
        # ||x - w||^2 = ||x||^2 - 2 x.w + ||w||^2; ||x||^2 is constant per position.
        dist = w.pow(2).sum(-1) - 2 * x @ w.t()  # (B, N, V)
        return dist.argmin(-1)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        enc: torch.Tensor,
        enc_mask: torch.Tensor | None = None,
        code_mask: torch.Tensor | None = None,
    ) -> ModelOutput:
        """One full pass N -> D -> H; ``hidden`` is D_s. Needs ``cfg.prediction == "sample"``, since
        turning ``eps`` into ``x_0`` is the scheduler's job (use :meth:`denoise` + the scheduler)."""
        if self.cfg.prediction != "sample":
            raise ValueError("CodeFusion.forward needs prediction='sample'; compose denoise/decode instead")
        hidden = self.decode(self.denoise(x_t, t, enc, enc_mask, code_mask), enc, enc_mask, code_mask)
        return ModelOutput(logits=self.logits(hidden), hidden=hidden)

    def _check_code_len(self, n: int) -> None:
        if n > self.cfg.code_length:
            raise ValueError(f"code length {n} exceeds code_length {self.cfg.code_length}")

    def num_parameters(self) -> int:
        """Number of distinct parameters (tied weights counted once)."""
        return sum(p.numel() for p in self.parameters())


def parameter_counts(model: CodeFusion) -> dict[str, int]:
    """Parameters per component (E, L, N, D, H); shared tensors are counted once, under L."""
    seen: set[int] = set()

    def count(*modules: nn.Module | None) -> int:
        total = 0
        for m in modules:
            for p in [] if m is None else m.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
        return total

    counts = {
        "encoder": count(model.t5, model.nl_embed, model.encoder, model.encoder_norm),
        "code_embedding": count(model.code_embed),
        "denoiser": count(model.denoiser, model.time_embed),
        "decoder": count(model.decoder),
        "head": count(model.head, model.copy),
    }
    counts["total"] = sum(counts.values())
    return counts


def preset_parameter_counts(name: str, vocab_size: int = 32100) -> dict[str, int]:
    """:func:`parameter_counts` of preset ``name``, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = CodeFusion(preset(name, vocab_size=vocab_size))
    return parameter_counts(model)
