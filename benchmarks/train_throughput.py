"""Training throughput and model FLOPs utilisation of nl2code vs Hugging Face ``transformers``.

Pairs, each with the same batch, sequence length, weights where the architectures allow, and the
same optimizer (``torch.optim.AdamW(fused=True)``: ours from ``nl2code.train.optim.build_optimizer``,
the peer's is transformers' default ``adamw_torch_fused``), gradient clipping at 1.0, fp32:

* ``codegen``: our CodeGenLM (SwiGLU, RMSNorm, rotary, no biases; 512 wide) trained through the
  ``causal_lm`` objective, vs ``LlamaForCausalLM`` built from ``nl2code.models.hf_export`` with our
  very weights (the same function: the first losses agree to 1e-5).
* ``codefusion``: our CodeFusion trained through its three-term objective, vs a
  ``T5ForConditionalGeneration`` with the same width, heads, MLP (gelu, 4x), encoder depth and
  decoder depth = denoiser + decoder layers, on the same utterance/code lengths.

A step is forward + loss + backward + clip + AdamW step. Tokens per step: B x T (codegen), B x
(utterance + code length) (codefusion). MFU = model FLOPs per second / this machine's fp32 matmul
peak: the fastest n x n ``torch.mm`` over n in 1024, 2048, 4096 (best of five each), measured before
and after the runs (the faster of the two). Model FLOPs:
codegen ``6 (N_nonembed + d V) + 12 L d T`` per token (PaLM appendix B; the LM head is a d x V
matmul, the embedding lookup is free); codefusion: the FLOPs of one training step counted by
``torch.utils.flop_counter`` (matmuls and attention), divided by its tokens.

Targets (>= 1.3x the peer, MFU >= 50%) get a verdict each; an unmet one is explained by the profile
of one step of each side taken in the same run (``gap_analysis`` in ``_common``): the share of our
step in matmul/attention kernels, the peer's time in them relative to ours, and the most we could
gain by removing everything else.

    python benchmarks/train_throughput.py [--quick] [--threads N[,M]] [--repeats R] [--bf16] [--compile] [--no-profile]

writes benchmarks/results/train_throughput.json (per model at the top level: ``tokens_per_s``,
``peer_tokens_per_s``, ``ratio_vs_peer``, ``mfu``, ...; ``targets``) and .md. ``--quick`` (smaller
batch, 3 repeats) finishes within two minutes on two cores.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from _common import (
    RESULTS,
    gap_analysis,
    header_md,
    interleaved,
    load_average,
    machine_info,
    machine_peak,
    md_table,
    profile_md,
    profile_top,
    set_threads,
    target_row,
    targets_md,
    write_results,
)


@dataclass(frozen=True)
class ARSetup:
    d_model: int = 512
    n_layers: int = 4
    n_heads: int = 8
    vocab_size: int = 8192
    seq_len: int = 256
    batch: int = 8


@dataclass(frozen=True)
class CFSetup:
    d_model: int = 512
    n_heads: int = 8
    encoder_layers: int = 2
    denoiser_layers: int = 2
    decoder_layers: int = 2
    embed_dim: int = 128
    nl_len: int = 64
    code_len: int = 64
    vocab_size: int = 8192
    batch: int = 16


FULL = (ARSetup(), CFSetup())
QUICK = (ARSetup(seq_len=128, batch=2), CFSetup(nl_len=32, code_len=32, batch=4))
LR, BETAS, EPS, WD, CLIP = 3e-4, (0.9, 0.95), 1e-8, 0.1, 1.0


def _train_cfg() -> Any:
    from nl2code.train.config import TrainConfig

    return TrainConfig(lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, clip=CLIP)


def peer_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """transformers' default optimizer (``adamw_torch_fused``) with our hyper-parameters and groups."""
    from nl2code.train.optim import param_groups

    return torch.optim.AdamW(param_groups(model, WD), lr=LR, betas=BETAS, eps=EPS, fused=True)


def make_step(
    model: torch.nn.Module, opt: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor], precision: str = "fp32"
) -> Callable[[], float]:
    """One optimizer step as the training loop takes it: loss, backward, clip, step, zero_grad."""

    def step() -> float:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        with ctx:
            loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


# -- codegen vs LlamaForCausalLM ---------------------------------------------------------------------


def ar_models(s: ARSetup, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Our CodeGenLM and a LlamaForCausalLM holding the same weights."""
    import transformers

    from nl2code.models.codegen import CodeGenConfig, CodeGenLM
    from nl2code.models.hf_export import llama_config, to_llama_state_dict

    cfg = CodeGenConfig(
        vocab_size=s.vocab_size,
        d_model=s.d_model,
        n_layers=s.n_layers,
        n_heads=s.n_heads,
        mlp="swiglu",
        max_seq_len=s.seq_len,
    )
    ours = CodeGenLM(cfg, torch.Generator().manual_seed(seed))
    hf_cfg = {k: v for k, v in llama_config(cfg).items() if k not in ("architectures", "model_type", "torch_dtype")}
    peer = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf_cfg, attn_implementation="sdpa"))
    missing, unexpected = peer.load_state_dict(to_llama_state_dict(ours), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:  # the tied head is the embedding
        raise RuntimeError(f"LLaMA weights do not line up: missing {missing}, unexpected {unexpected}")
    return ours, peer


def ar_flops_per_token(model: torch.nn.Module, s: ARSetup) -> float:
    """``6 (N_nonembed + d V) + 12 L d T``: parameters once per matmul, forward + backward (x3)."""
    n_nonembed = model.num_parameters() - s.vocab_size * s.d_model * (1 if model.cfg.tie_embeddings else 2)
    return 6 * (n_nonembed + s.d_model * s.vocab_size) + 12 * s.n_layers * s.d_model * s.seq_len


def ar_steps(s: ARSetup, precision: str = "fp32", seed: int = 0) -> dict[str, Any]:
    """The two step functions (ours, peer) on one shared random batch, plus what MFU needs."""
    from nl2code.data.collate import Batch
    from nl2code.objectives.autoregressive import CausalLMObjective
    from nl2code.train.optim import build_optimizer

    ours, peer = ar_models(s, seed)
    ids = torch.randint(0, s.vocab_size, (s.batch, s.seq_len), generator=torch.Generator().manual_seed(seed + 1))
    ones = torch.ones_like(ids, dtype=torch.bool)
    batch = Batch(ids, ones, ones)
    objective, gen = CausalLMObjective(), torch.Generator().manual_seed(seed)
    ours_opt = build_optimizer(ours, _train_cfg(), torch.device("cpu"))
    with torch.no_grad():  # same function before any update
        l_ours, l_peer = float(objective(ours, batch, gen)[0]), float(peer(ids, labels=ids).loss)
    return {
        "models": (ours, peer),
        "ours": make_step(ours, ours_opt, lambda: objective(ours, batch, gen)[0], precision),
        "peer": make_step(peer, peer_optimizer(peer), lambda: peer(ids, labels=ids).loss, precision),
        "tokens_per_step": s.batch * s.seq_len,
        "flops_per_step": ar_flops_per_token(ours, s) * s.batch * s.seq_len,
        "initial_loss": {"ours": round(l_ours, 6), "peer": round(l_peer, 6)},
        "params": ours.num_parameters(),
    }


# -- CodeFusion vs T5 ------------------------------------------------------------------------------


def cf_models(s: CFSetup, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    import transformers

    from nl2code.models.codefusion import CodeFusion, CodeFusionConfig

    cfg = CodeFusionConfig(
        vocab_size=s.vocab_size,
        d_model=s.d_model,
        n_heads=s.n_heads,
        encoder_layers=s.encoder_layers,
        denoiser_layers=s.denoiser_layers,
        decoder_layers=s.decoder_layers,
        embed_dim=s.embed_dim,
        code_length=s.code_len,
        max_nl_length=s.nl_len,
    )
    ours = CodeFusion(cfg, torch.Generator().manual_seed(seed))
    t5 = transformers.T5Config(
        vocab_size=s.vocab_size,
        d_model=s.d_model,
        d_kv=s.d_model // s.n_heads,
        d_ff=4 * s.d_model,
        num_layers=s.encoder_layers,
        num_decoder_layers=s.denoiser_layers + s.decoder_layers,
        num_heads=s.n_heads,
        feed_forward_proj="gelu",
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        attn_implementation="sdpa",
    )
    torch.manual_seed(seed)
    return ours, transformers.T5ForConditionalGeneration(t5)


def counted_flops(fn: Callable[[], Any]) -> float:
    """FLOPs (matmuls, attention) that ``fn`` executes, counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def cf_steps(s: CFSetup, precision: str = "fp32", seed: int = 0) -> dict[str, Any]:
    from nl2code.data.collate import Batch
    from nl2code.objectives.diffusion import CodeFusionObjective
    from nl2code.train.optim import build_optimizer

    ours, peer = cf_models(s, seed)
    g = torch.Generator().manual_seed(seed + 1)
    code = torch.randint(3, s.vocab_size, (s.batch, s.code_len), generator=g)
    nl = torch.randint(3, s.vocab_size, (s.batch, s.nl_len), generator=g)
    ones_c, ones_n = torch.ones_like(code, dtype=torch.bool), torch.ones_like(nl, dtype=torch.bool)
    batch = Batch(code, ones_c, ones_c, extras={"nl": nl, "nl_mask": ones_n})
    objective, gen = CodeFusionObjective(), torch.Generator().manual_seed(seed)

    def ours_loss() -> torch.Tensor:
        return objective(ours, batch, gen)[0]

    def peer_loss() -> torch.Tensor:
        return peer(input_ids=nl, attention_mask=ones_n, labels=code).loss

    return {
        "models": (ours, peer),
        "ours": make_step(ours, build_optimizer(ours, _train_cfg(), torch.device("cpu")), ours_loss, precision),
        "peer": make_step(peer, peer_optimizer(peer), peer_loss, precision),
        "tokens_per_step": s.batch * (s.nl_len + s.code_len),
        "flops_per_step": counted_flops(lambda: ours_loss().backward()),
        "peer_flops_per_step": counted_flops(lambda: peer_loss().backward()),
        "params": ours.num_parameters(),
        "peer_params": sum(p.numel() for p in peer.parameters()),
    }


def compiled_ar_step(pair: dict[str, Any], s: ARSetup) -> tuple[Callable[[], float], float]:
    """Our codegen step with ``torch.compile(model)`` (own optimizer state); returns it and the compile seconds."""
    from nl2code.data.collate import Batch
    from nl2code.objectives.autoregressive import CausalLMObjective
    from nl2code.train.optim import build_optimizer

    ours = pair["models"][0]
    compiled = torch.compile(ours)
    ids = torch.randint(0, s.vocab_size, (s.batch, s.seq_len), generator=torch.Generator().manual_seed(1))
    ones = torch.ones_like(ids, dtype=torch.bool)
    batch, objective, gen = Batch(ids, ones, ones), CausalLMObjective(), torch.Generator().manual_seed(0)
    step = make_step(
        ours, build_optimizer(ours, _train_cfg(), torch.device("cpu")), lambda: objective(compiled, batch, gen)[0]
    )
    t = time.perf_counter()
    step()  # the first call compiles forward and backward
    return step, round(time.perf_counter() - t, 1)


# -- measurement -------------------------------------------------------------------------------------


def measure_pair(
    pair: dict[str, Any],
    peak: float,
    repeats: int,
    warmup: int = 1,
    profile: bool = True,
    extra: dict[str, Callable[[], Any]] | None = None,
) -> dict[str, Any]:
    """Interleaved timing of ours vs the peer (and ``extra`` variants of ours), then one profile each."""
    fns = {"ours": pair["ours"], "peer": pair["peer"], **(extra or {})}
    timing = interleaved(fns, repeats, warmup)
    tok = pair["tokens_per_step"]
    ours_s, peer_s = timing["ours"]["median_s"], timing["peer"]["median_s"]
    flops = pair["flops_per_step"]
    peer_flops = pair.get("peer_flops_per_step", flops)
    out = {
        "tokens_per_step": tok,
        "tokens_per_s": round(tok / ours_s, 1),
        "peer_tokens_per_s": round(tok / peer_s, 1),
        "ratio_vs_peer": round(peer_s / ours_s, 3),
        "mfu": round(flops / ours_s / peak, 4),
        "peer_mfu": round(peer_flops / peer_s / peak, 4),
        "model_flops_per_step": flops,
        "peer_flops_per_step": peer_flops,
        "params": pair["params"],
        "timing": timing,
    }
    best = {k: min(v["runs_s"]) for k, v in timing.items()}
    out["ratio_vs_peer_best"] = round(best["peer"] / best["ours"], 3)  # fastest vs fastest: least contended
    out["ratio_vs_peer_cpu"] = round(timing["peer"]["cpu_s"] / timing["ours"]["cpu_s"], 3)
    for name in extra or {}:
        out[f"{name}_tokens_per_s"] = round(tok / timing[name]["median_s"], 1)
        out[f"{name}_ratio_vs_peer"] = round(peer_s / timing[name]["median_s"], 3)
    for key in ("initial_loss", "peer_params"):
        if key in pair:
            out[key] = pair[key]
    if profile:
        out["profile"] = {"ours": profile_top(pair["ours"]), "peer": profile_top(pair["peer"])}
        out["gap"] = gap_analysis(ours_s, peer_s, out["profile"]["ours"], out["profile"]["peer"], TARGETS["ratio"])
    return out


TARGETS = {"ratio": 1.3, "mfu": 0.5}  # issue #9: >= 1.3x the peer, >= 50% of the fp32 matmul peak
MODELS = ("codegen", "codefusion", "codegen_bf16", "codefusion_bf16")


def run(
    quick: bool,
    threads: int,
    repeats: int | None = None,
    bf16: bool = False,
    compile_: bool = False,
    setups: tuple[ARSetup, CFSetup] | None = None,
    profile: bool = True,
    peak_sizes: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    threads = set_threads(threads)
    ar_s, cf_s = setups or (QUICK if quick else FULL)
    repeats = repeats or (3 if quick else 5)
    peak_sizes = peak_sizes or ((1024, 2048) if quick else (1024, 2048, 4096))
    machine = machine_info()
    peaks = [machine_peak(peak_sizes)]
    results: dict[str, Any] = {}

    pair = ar_steps(ar_s)
    extra, compile_s = {}, None
    if compile_:
        extra["ours_compiled"], compile_s = compiled_ar_step(pair, ar_s)
    peak_now = peaks[0]["flops_per_s"]
    results["codegen"] = {"setup": asdict(ar_s), **measure_pair(pair, peak_now, repeats, profile=profile, extra=extra)}
    if compile_s is not None:
        results["codegen"]["compile_s"] = compile_s
    del pair
    pair = cf_steps(cf_s)
    results["codefusion"] = {"setup": asdict(cf_s), **measure_pair(pair, peak_now, repeats, profile=profile)}
    del pair
    if bf16:
        for name, fn, s in (("codegen_bf16", ar_steps, ar_s), ("codefusion_bf16", cf_steps, cf_s)):
            results[name] = {
                "setup": asdict(s),
                "precision": "bf16 autocast (both)",
                **measure_pair(fn(s, "bf16"), peak_now, repeats, profile=False),
            }
    peaks.append(machine_peak(peak_sizes))
    # The machine's limit is the faster of the two measurements: a slower one was slowed by other processes.
    peak = max(p["flops_per_s"] for p in peaks)
    for r in results.values():
        r["mfu"] = round(r["model_flops_per_step"] / r["timing"]["ours"]["median_s"] / peak, 4)
        r["peer_mfu"] = round(r["peer_flops_per_step"] / r["timing"]["peer"]["median_s"] / peak, 4)
        if "profile" in r:  # how fast our matmul kernels ran: model FLOPs / (step time x matmul share)
            share = r["profile"]["ours"]["matmul_share"]
            r["matmul_efficiency"] = round(r["mfu"] / share, 4) if share else None
    machine["load_after"] = load_average()
    return {
        "quick": quick,
        "threads": threads,
        "repeats": repeats,
        "machine": machine,
        "fp32_matmul_peak": {"flops_per_s": peak, "sizes": list(peak_sizes), "runs": peaks},
        "optimizer": {
            "kind": "torch.optim.AdamW(fused=True)",
            "lr": LR,
            "betas": BETAS,
            "eps": EPS,
            "weight_decay": WD,
            "clip": CLIP,
        },
        **results,
        "targets": targets(results),
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Verdicts of the fp32 targets, each unmet one explained from this run's profile."""
    rows = []
    for name in ("codegen", "codefusion"):
        r = results.get(name)
        if r is None:
            continue
        gap = r.get("gap", {}).get("text", "no profile taken (run without --no-profile)")
        rows.append(target_row(f"{name} tokens/s vs peer", r["ratio_vs_peer"], TARGETS["ratio"], ">=", gap))
        eff = r.get("matmul_efficiency")
        why = (
            f"{100 * r['profile']['ours']['matmul_share']:.0f}% of our step is in matmul/attention kernels and they "
            f"run at {100 * eff:.0f}% of the measured peak (model FLOPs / their time), so MFU <= {100 * eff:.0f}% "
            "even with nothing else in the step"
            if eff
            else "no profile taken"
        )
        rows.append(target_row(f"{name} MFU (fp32)", r["mfu"], TARGETS["mfu"], ">=", why))
    return rows


HEADERS = [
    "model",
    "params",
    "tokens/step",
    "ours tok/s",
    "peer tok/s",
    "ratio (median)",
    "ratio (best)",
    "ratio (CPU s)",
    "MFU",
    "peer MFU",
    "ours s/step",
    "peer s/step",
]


def section(res: dict[str, Any], level: str = "##") -> list[str]:
    """The result table, target verdicts and per-model profiles of one run (one thread count)."""
    m = {k: res[k] for k in MODELS if k in res}
    rows = [
        [
            name,
            r["params"],
            r["tokens_per_step"],
            r["tokens_per_s"],
            r["peer_tokens_per_s"],
            r["ratio_vs_peer"],
            r["ratio_vs_peer_best"],
            r["ratio_vs_peer_cpu"],
            f"{100 * r['mfu']:.1f}%",
            f"{100 * r['peer_mfu']:.1f}%",
            r["timing"]["ours"]["median_s"],
            r["timing"]["peer"]["median_s"],
        ]
        for name, r in m.items()
    ]
    pk = res["fp32_matmul_peak"]
    parts = [
        f"{level} {res['threads']} torch thread(s)\n",
        f"fp32 matmul peak at {res['threads']} thread(s): {pk['flops_per_s'] / 1e9:.1f} GFLOP/s, the fastest "
        f"n x n torch.mm over n in {pk['sizes']}, measured before and after the runs. Load average before "
        f"{res['machine']['load_average']}, after {res['machine']['load_after']}.\n",
        md_table(HEADERS, rows),
        f"\n{level}# Targets, {res['threads']} thread(s)\n",
        targets_md(res["targets"]),
    ]
    cg = m.get("codegen", {})
    if "ours_compiled_tokens_per_s" in cg:
        parts.append(
            f"\ntorch.compile (ours): {cg['ours_compiled_tokens_per_s']} tok/s "
            f"({cg['ours_compiled_ratio_vs_peer']}x the eager peer) after {cg['compile_s']} s of compilation."
        )
    for name, r in m.items():
        if "profile" not in r:
            continue
        parts += [
            f"\n{level}# Profile: {name}, {res['threads']} thread(s) (one step, torch.profiler self CPU time)\n",
            f"Model FLOPs per step: ours {r['model_flops_per_step'] / 1e9:.1f} G, peer "
            f"{r['peer_flops_per_step'] / 1e9:.1f} G. {r['gap']['text']}.\n",
            profile_md("Ours:", r["profile"]["ours"]),
            "",
            profile_md("Peer:", r["profile"]["peer"]),
        ]
    return parts


def markdown(res: dict[str, Any], command: str) -> str:
    notes = [
        f"Medians of {res['repeats']} interleaved steps per side (A B A B ...) after one warm-up step; "
        "'best' compares the fastest step of each side (the least disturbed by other processes), 'CPU s' the "
        "median process CPU seconds.",
        f"Targets (issue #9): ratio_vs_peer >= {TARGETS['ratio']} and fp32 MFU >= {TARGETS['mfu']} for the "
        "512-wide models; verdicts and, for unmet ones, the bound the same run's profile puts on them are in "
        "each 'Targets' table.",
        "Peers: codegen = transformers LlamaForCausalLM holding our weights; codefusion = "
        "T5ForConditionalGeneration (same width, heads and gelu MLP; encoder depth; decoder depth = denoiser + "
        "decoder). Optimizer: torch AdamW(fused=True) on both sides.",
    ]
    if res["quick"]:
        notes.append("--quick: smaller batch and sequence, fewer repeats; check numbers, not final ones.")
    parts = [header_md("Training throughput", command, res["machine"], notes), *section(res)]
    for extra in res.get("by_threads", {}).values():
        parts += ["", *section(extra)]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small batch, 3 repeats (< 2 minutes)")
    ap.add_argument(
        "--threads",
        default="0",
        help="torch threads, same for both sides (0 = all cores); a comma "
        "list measures each count, the first one is the headline",
    )
    ap.add_argument("--repeats", type=int, default=None, help="timed steps per side (default 3 quick, 5 full)")
    ap.add_argument("--bf16", action="store_true", help="also measure both under CPU bf16 autocast")
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile of our codegen")
    ap.add_argument("--no-profile", action="store_true", help="skip the torch.profiler pass (no gap analysis)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    command = " ".join(["python benchmarks/train_throughput.py", *(sys.argv[1:] if argv is None else argv)])
    counts = [int(t) for t in args.threads.split(",")]
    res = run(args.quick, counts[0], args.repeats, args.bf16, args.compile, profile=not args.no_profile)
    res["command"] = command
    if counts[1:]:
        res["by_threads"] = {}
        for n in counts[1:]:
            extra = run(args.quick, n, args.repeats, profile=not args.no_profile)
            res["by_threads"][str(extra["threads"])] = extra
    text = markdown(res, command)
    write_results("train_throughput", res, text, args.out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
