"""CodeFusion internals, measured on held-out gold pairs (issue #18).

Each function takes a trained :class:`CodeFusion`, a :class:`GoldBatch` (utterances and their gold code,
padded to the model's code length) and a seeded generator, and returns plain numbers:

* :func:`x0_by_t`: for each timestep t, gold code noised to t and ONE denoiser pass; token and sequence
  accuracy of D+H on the estimate ``x^_0``, of nearest-embedding rounding of ``x^_0``, and of rounding
  ``x_t / sqrt(ab_t)`` itself (what a model that only copied its input would get); the MSE of ``x^_0``,
  its largest entry, and the decoder's MSE and cross-entropy at that t (the loss terms, separately);
  and D+H's accuracy when every row is given another row's utterance (the same ``x_t``): how much the
  prediction at t rests on the request rather than on ``x_t`` or the language's common tokens.
* :func:`clean_decode`: D+H on the clean gold embeddings ``L(y)`` (the rounding a perfect denoiser
  would hand over) and the head alone on ``L(y)``.
* :func:`refine_vs_oneshot`: gold noised to t, then either one ``x^_0`` prediction or the reverse loop
  from t down with the given sampler settings; the loop should never lose accuracy.
* :func:`embedding_norms`: norms of the rows of ``L`` (all rows and the tokens the gold uses), their
  drift from the init scale, and the smallest distance between two used tokens' embeddings.
* :func:`candidates`: k sampled candidates per utterance: top-1 and any-of-k exact match, mean distinct
  candidates, empty top-1 share, and the 1-step sample's exact match (the sampler must not lose to it).

:func:`run` collects them into one report (a JSON-ready dict); :func:`to_markdown` renders it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nl2code.models.codefusion import CodeFusion, scheduler_for
from nl2code.sampling.diffusion import DiffusionSampler

DEFAULT_TIMESTEPS = (0, 50, 100, 200, 400, 600, 800, 1000, -1)  # -1 = T-1


@dataclass
class GoldBatch:
    """Utterances and gold code for the diagnostics.

    Attributes:
        nl: (B, S) utterance ids, padded with the model's pad id; ``nl_mask`` (B, S) True on tokens.
        code: (B, N) gold code ids (the program and its terminator), padded to ``code_length``.
        real: (B, N) True on the gold's own tokens (terminator included), False on padding.
    """

    nl: torch.Tensor
    nl_mask: torch.Tensor
    code: torch.Tensor
    real: torch.Tensor
    nl_lists: list[list[int]] = field(default_factory=list)

    @classmethod
    def build(cls, model: CodeFusion, nl_ids: list[list[int]], code_ids: list[list[int]]) -> GoldBatch:
        """Pad lists of ids; utterances are cut to ``max_nl_length``, code to ``code_length``."""
        cfg = model.cfg
        nl_ids = [(n or [cfg.pad_id])[: cfg.max_nl_length] for n in nl_ids]
        width = max(len(n) for n in nl_ids)
        nl = torch.full((len(nl_ids), width), cfg.pad_id, dtype=torch.long)
        nl_mask = torch.zeros_like(nl, dtype=torch.bool)
        code = torch.full((len(code_ids), cfg.code_length), cfg.pad_id, dtype=torch.long)
        real = torch.zeros_like(code, dtype=torch.bool)
        for i, (n, c) in enumerate(zip(nl_ids, code_ids, strict=True)):
            c = c[: cfg.code_length]
            nl[i, : len(n)], nl_mask[i, : len(n)] = torch.tensor(n), True
            code[i, : len(c)], real[i, : len(c)] = torch.tensor(c, dtype=torch.long), True
        return cls(nl, nl_mask, code, real, nl_ids)

    def __len__(self) -> int:
        return self.code.shape[0]


def accuracy(pred: torch.Tensor, batch: GoldBatch) -> dict[str, float]:
    """Token accuracy over the gold's real positions and sequence accuracy (every real position right,
    which, since the gold ends in its terminator, is exact match after cutting at the terminator)."""
    hit = (pred == batch.code) & batch.real
    return {
        "token_acc": float(hit.sum() / batch.real.sum().clamp_min(1)),
        "seq_acc": float((hit | ~batch.real).all(1).float().mean()),
    }


def _ts(model: CodeFusion, timesteps) -> list[int]:
    T = model.cfg.num_timesteps
    return sorted({T - 1 if t < 0 else min(t, T - 1) for t in timesteps})


@torch.no_grad()
def x0_by_t(model: CodeFusion, batch: GoldBatch, generator: torch.Generator, timesteps=DEFAULT_TIMESTEPS) -> dict:
    """Per timestep: accuracy of one ``x^_0`` prediction from gold noised to t (see module docstring)."""
    sched = scheduler_for(model.cfg)
    enc = model.encode(batch.nl, batch.nl_mask)
    # Row i gets row i-1's utterance: a derangement for B > 1 that keeps the utterance distribution.
    other_nl, other_mask = batch.nl.roll(1, 0), batch.nl_mask.roll(1, 0)
    other_enc = model.encode(other_nl, other_mask)
    x0 = model.embed_code(batch.code)
    bound = model.x0_bound()
    out = {}
    for t in _ts(model, timesteps):
        t_vec = torch.full((len(batch),), t, dtype=torch.long)
        noise = torch.randn(x0.shape, generator=generator)
        x_t = sched.add_noise(x0, noise, t_vec)
        x0_hat = sched.to_x0(model.denoise(x_t, t_vec, enc, batch.nl_mask), x_t, t, clip=bound)
        hidden, logits = model.decode_logits(x0_hat, enc, batch.nl_mask, batch.nl)
        other_x0 = sched.to_x0(model.denoise(x_t, t_vec, other_enc, other_mask), x_t, t, clip=bound)
        other_logits = model.decode_logits(other_x0, other_enc, other_mask, other_nl)[1]
        logits = logits.float()
        ce = torch.nn.functional.cross_entropy(logits[batch.real], batch.code[batch.real])
        ab = sched._alpha_bar(t, x_t)
        row = {
            "alpha_bar": float(ab.flatten()[0]),
            "decoded": accuracy(logits.argmax(-1), batch),
            "decoded_other_nl": accuracy(other_logits.argmax(-1), batch),
            "x0_rounded": accuracy(model.nearest_tokens(x0_hat), batch),
            "xt_rounded": accuracy(model.nearest_tokens(x_t / ab.sqrt()), batch),
            "x0_mse": float((x0_hat - x0).pow(2).mean(-1)[batch.real].mean()),
            "x0_max_abs": float(x0_hat.abs().max()),
            "decoder_mse": float((hidden - x0).pow(2).mean(-1)[batch.real].mean()),
            "ce": float(ce),
        }
        out[str(t)] = row
    return out


@torch.no_grad()
def clean_decode(model: CodeFusion, batch: GoldBatch) -> dict:
    """D+H on the clean gold embeddings ``L(y)``, and H alone on ``L(y)``."""
    enc = model.encode(batch.nl, batch.nl_mask)
    x0 = model.embed_code(batch.code)
    return {
        "decoder_head": accuracy(model.decode_logits(x0, enc, batch.nl_mask, batch.nl)[1].argmax(-1), batch),
        "head_only": accuracy(model.logits(x0).argmax(-1), batch),
    }


@torch.no_grad()
def refine_vs_oneshot(
    model: CodeFusion,
    batch: GoldBatch,
    generator: torch.Generator,
    t_start: int,
    num_steps: int | None = None,
    eta: float | None = None,
    rounding: str | None = None,
) -> dict:
    """Gold noised to ``t_start``: one ``x^_0`` prediction (decoded by D+H) vs the reverse loop.

    ``num_steps``/``eta`` None = the sampler's defaults. The loop visits ``t_start`` and then the
    sampler's inference timesteps below it, so with ``num_steps`` spread over T it takes a share.
    """
    kw = {} if eta is None else {"eta": eta}
    if rounding is not None:
        kw["rounding"] = rounding
    sampler = DiffusionSampler(model, num_steps=num_steps, **kw)
    sched = sampler.scheduler
    enc = model.encode(batch.nl, batch.nl_mask)
    x0 = model.embed_code(batch.code)
    t_vec = torch.full((len(batch),), t_start, dtype=torch.long)
    x_t = sched.add_noise(x0, torch.randn(x0.shape, generator=generator), t_vec)
    x0_hat = sched.to_x0(model.denoise(x_t, t_vec, enc, batch.nl_mask), x_t, t_start, clip=model.x0_bound())
    one_ids, _ = sampler.to_tokens(x0_hat, enc, batch.nl_mask, generator, batch.nl)
    final = sampler.denoise(enc, batch.nl_mask, len(batch), generator, x_start=x_t, t_start=t_start, ctx_ids=batch.nl)
    loop_ids, _ = sampler.to_tokens(final, enc, batch.nl_mask, generator, batch.nl)
    return {
        "t": t_start,
        "loop_steps": len(sched.timesteps),
        "eta": sched.eta,
        "one_shot": accuracy(one_ids, batch),
        "loop": accuracy(loop_ids, batch),
    }


@torch.no_grad()
def embedding_norms(model: CodeFusion, batch: GoldBatch | None = None) -> dict:
    """Row norms of ``L`` (all rows, and the tokens in the gold), relative to the init scale."""
    w = model.code_embed.weight.detach().float()
    norms = w.norm(dim=-1)
    init = model.cfg.embed_init_std * model.cfg.diffusion_dim**0.5

    def stats(v: torch.Tensor) -> dict[str, float]:
        return {"mean": float(v.mean()), "std": float(v.std()) if v.numel() > 1 else 0.0,
                "min": float(v.min()), "max": float(v.max())}  # fmt: skip

    out = {"all": stats(norms), "init_norm": init, "drift": float(norms.mean() / init), "max_abs": float(w.abs().max())}
    if batch is not None:
        used = torch.unique(batch.code[batch.real])
        out["used"] = stats(norms[used])
        if used.numel() > 1:
            d = torch.cdist(w[used], w[used])
            d.fill_diagonal_(float("inf"))
            out["used_min_pair_distance"] = float(d.min())
    return out


@torch.no_grad()
def candidates(
    model: CodeFusion,
    batch: GoldBatch,
    generator: torch.Generator,
    k: int = 5,
    num_steps: int | None = None,
    eos_id: int | None = None,
    rounding: str | None = None,
) -> dict:
    """k candidates per utterance with the default sampler (and ``num_steps``), plus the 1-step sample."""
    kw = {} if rounding is None else {"rounding": rounding}

    def golds() -> list[list[int]]:
        stops = {model.cfg.pad_id} | ({eos_id} if eos_id is not None else set())
        out = []
        for row in batch.code.tolist():
            end = next((i for i, tok in enumerate(row) if tok in stops), len(row))
            out.append(row[:end])
        return out

    gold = golds()
    seed = int(torch.randint(0, 2**31, (1,), generator=generator))
    res = DiffusionSampler(model, num_steps=num_steps, eos_id=eos_id, **kw).generate(
        batch.nl_lists, k, torch.Generator().manual_seed(seed)
    )
    one = DiffusionSampler(model, num_steps=1, eos_id=eos_id, **kw).generate(
        batch.nl_lists, 1, torch.Generator().manual_seed(seed)
    )
    n = len(gold)
    return {
        "k": k,
        "num_steps": num_steps or model.cfg.num_timesteps,
        "top1_exact": sum(c[0] == g for c, g in zip(res.ids, gold)) / n,
        "any_of_k_exact": sum(g in c for c, g in zip(res.ids, gold)) / n,
        "distinct_per_prompt": sum(len({tuple(x) for x in c}) for c in res.ids) / n,
        "empty_top1": sum(not c[0] for c in res.ids) / n,
        "one_step_top1_exact": sum(c[0] == g for c, g in zip(one.ids, gold)) / n,
    }


def run(
    model: CodeFusion,
    batch: GoldBatch,
    *,
    seed: int = 0,
    timesteps=DEFAULT_TIMESTEPS,
    refine_from=(100, 400),
    num_steps: int | None = 50,
    k: int = 5,
    eos_id: int | None = None,
    rounding: str | None = None,
) -> dict:
    """Every diagnostic on ``batch``; deterministic given ``seed``. ``rounding`` None = the sampler's
    default."""
    was_training = model.training
    model.eval()
    try:
        gen = torch.Generator().manual_seed(seed)
        T = model.cfg.num_timesteps
        return {
            "examples": len(batch),
            "num_timesteps": T,
            "pad_share": float(1 - batch.real.float().mean()),
            "x0_by_t": x0_by_t(model, batch, gen, timesteps),
            "clean_decode": clean_decode(model, batch),
            "refine": [
                refine_vs_oneshot(model, batch, gen, min(t, T - 1), num_steps=num_steps, eta=eta, rounding=rounding)
                for t in refine_from
                for eta in (0.0, 1.0)
            ],
            "embeddings": embedding_norms(model, batch),
            "candidates": candidates(model, batch, gen, k=k, num_steps=num_steps, eos_id=eos_id, rounding=rounding),
        }
    finally:
        model.train(was_training)


def to_markdown(report: dict) -> str:
    """The report as markdown tables."""
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = [f"# CodeFusion diagnostics ({report['examples']} held-out pairs, T = {report['num_timesteps']})", ""]
    lines += [f"Pad share of code positions: {pct(report['pad_share'])}%", ""]
    lines += ["## One x^_0 prediction from gold noised to t", ""]
    lines += [
        "| t | alpha_bar | D+H tok | D+H seq | D+H tok, another row's NL | round x^_0 tok | round x_t tok "
        "| x^_0 MSE | max abs x^_0 | D MSE | CE |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t, r in report["x0_by_t"].items():
        lines.append(
            f"| {t} | {r['alpha_bar']:.3g} | {pct(r['decoded']['token_acc'])} | {pct(r['decoded']['seq_acc'])} | "
            f"{pct(r['decoded_other_nl']['token_acc'])} | "
            f"{pct(r['x0_rounded']['token_acc'])} | {pct(r['xt_rounded']['token_acc'])} | {r['x0_mse']:.3g} | "
            f"{r['x0_max_abs']:.3g} | {r['decoder_mse']:.3g} | {r['ce']:.3g} |"
        )
    c = report["clean_decode"]
    lines += ["", "## Clean decode of gold embeddings L(y)", ""]
    lines += [f"- D+H: tokens {pct(c['decoder_head']['token_acc'])}%, sequences {pct(c['decoder_head']['seq_acc'])}%"]
    lines += [f"- H alone: tokens {pct(c['head_only']['token_acc'])}%, sequences {pct(c['head_only']['seq_acc'])}%"]
    lines += ["", "## Reverse loop from gold noised to t vs one x^_0 prediction", ""]
    lines += [
        "| t | eta | loop steps | one-shot tok | loop tok | one-shot seq | loop seq |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["refine"]:
        lines.append(
            f"| {r['t']} | {r['eta']} | {r['loop_steps']} | {pct(r['one_shot']['token_acc'])} | "
            f"{pct(r['loop']['token_acc'])} | {pct(r['one_shot']['seq_acc'])} | {pct(r['loop']['seq_acc'])} |"
        )
    e = report["embeddings"]
    lines += ["", "## Embeddings L", ""]
    lines += [f"- row norm (all): mean {e['all']['mean']:.3g}, std {e['all']['std']:.3g}, init {e['init_norm']:.3g}, "
              f"drift x{e['drift']:.3g}; largest entry {e['max_abs']:.3g}"]  # fmt: skip
    if "used" in e:
        u = e["used"]
        lines += [f"- row norm (used): mean {u['mean']:.3g}, min {u['min']:.3g}, max {u['max']:.3g}"]
    if "used_min_pair_distance" in e:
        lines += [f"- closest pair of used tokens: {e['used_min_pair_distance']:.3g}"]
    s = report["candidates"]
    lines += ["", f"## Candidates (k = {s['k']}, {s['num_steps']} steps, default sampler)", ""]
    lines += [f"- top-1 exact {pct(s['top1_exact'])}%, any-of-k exact {pct(s['any_of_k_exact'])}%, "
              f"1-step top-1 exact {pct(s['one_step_top1_exact'])}%"]  # fmt: skip
    lines += [f"- distinct candidates per prompt {s['distinct_per_prompt']:.2f}, empty top-1 {pct(s['empty_top1'])}%"]
    return "\n".join(lines) + "\n"
