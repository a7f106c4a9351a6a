"""Generation speed: our KV-cache sampler vs ``transformers`` ``generate``, and CodeFusion programs/s
and template match against the number of denoising steps.

* ``codegen``: our CodeGenLM (512 wide, the training benchmark's shape) and ``LlamaForCausalLM`` with
  the same weights (``nl2code.models.hf_export``), both with a KV cache, fp32, on the same prompts.
  ``greedy``: every prompt decodes exactly ``new_tokens`` tokens (no stop token), and the token ids
  of both must agree. ``sampling``: ``n`` samples per prompt at temperature 0.8, top-p 0.95 (the
  pass@k workload; ``num_return_sequences`` in transformers). Tokens/s counts generated tokens.
* ``codefusion``: a CodeFusion model samples ``--problems`` test utterances (a seeded random sample,
  seed 0) of CodeFusion's
  Bash benchmark with 1200, 300, 100, 50 and 20 reverse steps (top-1, one sample per problem);
  template match from ``nl2code.eval.tasks.get_task("codefusion-bash")``. The model is a trained run
  (``--run DIR``) or, without one, a tiny model trained here for ``--train-seconds`` on the train split
  (``../shared/data``; skipped with a message when absent) - its accuracy is near zero, so only the
  speed column means much then.

    python benchmarks/generation.py [--quick] [--threads N[,M]] [--run DIR] [--problems N] [--steps 1200,300,...]

writes benchmarks/results/generation.json (``codegen``: ``tokens_per_s``, ``peer_tokens_per_s``,
``ratio_vs_peer`` of the greedy workload, with per-workload details; ``codefusion``: the ``steps``
table; ``targets``: verdicts, an unmet AR one explained by the greedy profile of the same run) and
.md. ``--quick`` (without ``--run``) finishes within two minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from _common import (
    DATA,
    RESULTS,
    gap_analysis,
    header_md,
    interleaved,
    load_average,
    machine_info,
    md_table,
    memory_bandwidth,
    profile_md,
    profile_top,
    set_threads,
    target_row,
    targets_md,
    write_results,
)

BASH = DATA / "codefusion" / "benchmarks" / "BashBenchmarks.json"
CF = DATA / "codefusion" / "benchmarks" / "CFRuleBenchmarks.json"
# CodeFusion benchmark task -> (test data, top-1 metric the steps target is judged on, extra columns).
TASKS = {
    "codefusion-bash": (BASH, "template_match@1", ("command_match@1",)),
    "codefusion-cf": (CF, "execution_match@1", ("execution_match_nonempty@1", "exact_match@1")),
}
STEPS = (1200, 300, 100, 50, 20)
TARGET_RATIO = 1.3  # issue #9: AR tokens/s >= 1.3x transformers generate
TARGET_POINTS = 2.0  # ... and CodeFusion with <= 50 steps within 2 points of the 1200-step top-1


@dataclass(frozen=True)
class GenSetup:
    d_model: int = 512
    n_layers: int = 4
    n_heads: int = 8
    vocab_size: int = 8192
    prompts: int = 8
    prompt_len: int = 64
    new_tokens: int = 64
    sample_prompts: int = 2
    samples_per_prompt: int = 8


FULL = GenSetup()
QUICK = GenSetup(prompts=4, prompt_len=16, new_tokens=16, sample_prompts=1, samples_per_prompt=4)


def ar_pair(s: GenSetup, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Our CodeGenLM and LlamaForCausalLM with the same weights, both in eval mode."""
    import transformers

    from nl2code.models.codegen import CodeGenConfig, CodeGenLM
    from nl2code.models.hf_export import llama_config, to_llama_state_dict

    cfg = CodeGenConfig(
        vocab_size=s.vocab_size,
        d_model=s.d_model,
        n_layers=s.n_layers,
        n_heads=s.n_heads,
        mlp="swiglu",
        max_seq_len=max(512, s.prompt_len + s.new_tokens),
    )
    ours = CodeGenLM(cfg, torch.Generator().manual_seed(seed)).eval()
    hf_cfg = {k: v for k, v in llama_config(cfg).items() if k not in ("architectures", "model_type", "torch_dtype")}
    peer = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf_cfg, attn_implementation="sdpa")).eval()
    peer.load_state_dict(to_llama_state_dict(ours), strict=False)
    return ours, peer


def ar_workloads(s: GenSetup, seed: int = 0) -> dict[str, dict[str, Any]]:
    """name -> {ours, peer (callables returning generated ids per row), tokens}."""
    from nl2code.sampling.autoregressive import sample

    ours, peer = ar_pair(s, seed)
    g = torch.Generator().manual_seed(seed + 1)
    greedy_prompts = torch.randint(5, s.vocab_size, (s.prompts, s.prompt_len), generator=g)
    samp_prompts = torch.randint(5, s.vocab_size, (s.sample_prompts, s.prompt_len), generator=g)
    n, new = s.samples_per_prompt, s.new_tokens
    hf_common = {"max_new_tokens": new, "min_new_tokens": new, "pad_token_id": 0, "eos_token_id": None}

    def ours_greedy() -> list[list[int]]:
        return [c[0].ids for c in sample(ours, greedy_prompts.tolist(), max_new_tokens=new, temperature=0.0)]

    def peer_greedy() -> list[list[int]]:
        with torch.no_grad():
            out = peer.generate(
                greedy_prompts, attention_mask=torch.ones_like(greedy_prompts), do_sample=False, **hf_common
            )
        return out[:, s.prompt_len :].tolist()

    def ours_sampling() -> list[list[int]]:
        groups = sample(ours, samp_prompts.tolist(), n=n, max_new_tokens=new, temperature=0.8, top_p=0.95, seed=seed)
        return [c.ids for group in groups for c in group]

    def peer_sampling() -> list[list[int]]:
        torch.manual_seed(seed)
        with torch.no_grad():
            out = peer.generate(
                samp_prompts,
                attention_mask=torch.ones_like(samp_prompts),
                do_sample=True,
                temperature=0.8,
                top_p=0.95,
                top_k=0,
                num_return_sequences=n,
                **hf_common,
            )
        return out[:, s.prompt_len :].tolist()

    return {
        "greedy": {"ours": ours_greedy, "peer": peer_greedy, "tokens": s.prompts * new, "model": ours},
        "sampling": {"ours": ours_sampling, "peer": peer_sampling, "tokens": s.sample_prompts * n * new},
    }


def measure_ar(s: GenSetup, repeats: int, profile: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"setup": asdict(s)}
    for name, w in ar_workloads(s).items():
        a, b = w["ours"](), w["peer"]()
        lengths_ok = all(len(x) == s.new_tokens for x in a + b)
        timing = interleaved({"ours": w["ours"], "peer": w["peer"]}, repeats, warmup=0)
        ours_s, peer_s = timing["ours"]["median_s"], timing["peer"]["median_s"]
        r = {
            "tokens_per_run": w["tokens"],
            "tokens_per_s": round(w["tokens"] / ours_s, 1),
            "peer_tokens_per_s": round(w["tokens"] / peer_s, 1),
            "ratio_vs_peer": round(peer_s / ours_s, 3),
            "ratio_vs_peer_best": round(min(timing["peer"]["runs_s"]) / min(timing["ours"]["runs_s"]), 3),
            "ratio_vs_peer_cpu": round(timing["peer"]["cpu_s"] / max(timing["ours"]["cpu_s"], 1e-9), 3),
            "all_rows_full_length": lengths_ok,
            "timing": timing,
        }
        if name == "greedy":
            r["greedy_outputs_identical"] = a == b
        if profile and name == "greedy":
            r["profile"] = {"ours": profile_top(w["ours"]), "peer": profile_top(w["peer"])}
            r["gap"] = gap_analysis(
                ours_s,
                peer_s,
                r["profile"]["ours"],
                r["profile"]["peer"],
                TARGET_RATIO,
                "norms, activations, token choice, cache writes",
            )
            r["gap"] |= weight_traffic(w["model"], s, ours_s, peer_s)
            r["gap"]["text"] += "; " + r["gap"]["bandwidth_text"]
        out[name] = r
    g = out["greedy"]
    out.update(
        tokens_per_s=g["tokens_per_s"], peer_tokens_per_s=g["peer_tokens_per_s"], ratio_vs_peer=g["ratio_vs_peer"]
    )
    return out


def weight_traffic(model: torch.nn.Module, s: GenSetup, ours_s: float, peer_s: float) -> dict[str, Any]:
    """Why a KV-cache decode of a few rows cannot beat a peer that runs the same matmuls: each new token
    multiplies a handful of rows by every weight matrix, so the step streams all matmul weights from
    memory. Their bytes x tokens / time, per side, next to this machine's measured copy bandwidth."""
    seen, weight_bytes = set(), 0
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            weight_bytes += m.weight.numel() * m.weight.element_size()
    streamed = weight_bytes * s.new_tokens  # prefill reads them once more: a lower bound
    bw = memory_bandwidth()["bytes_per_s"]
    ours_bw, peer_bw = streamed / ours_s, streamed / peer_s
    text = (
        f"each new token multiplies {s.prompts} rows by all {weight_bytes / 2**20:.0f} MiB of fp32 matmul weights "
        f"(torch.mm on {s.prompts}-row inputs, the same calls on both sides): that streams at least "
        f"{ours_bw / 1e9:.1f} GB/s of weights for ours and {peer_bw / 1e9:.1f} GB/s for the peer, "
        f"{100 * ours_bw / bw:.0f}% of the {bw / 1e9:.1f} GB/s a plain memory copy reaches here, so the rest of "
        "the gap to 1.3x lies in torch's few-row matmul kernel, which both sides share"
    )
    return {
        "weight_bytes": weight_bytes,
        "ours_weight_gb_per_s": round(ours_bw / 1e9, 2),
        "peer_weight_gb_per_s": round(peer_bw / 1e9, 2),
        "copy_gb_per_s": round(bw / 1e9, 2),
        "bandwidth_text": text,
    }


# -- CodeFusion -----------------------------------------------------------------------------------------


def train_tiny_codefusion(seconds: float, seed: int = 0, vocab: int = 1024) -> tuple[Any, Any, dict[str, Any]]:
    """A codefusion-tiny model trained for ``seconds`` on the Bash train split (plain AdamW loop)."""
    import numpy as np

    from nl2code.data.collate import Example, pad_collate
    from nl2code.data.sources import load_source
    from nl2code.data.tokenizer import CodeTokenizer
    from nl2code.models.codefusion import CodeFusion, preset
    from nl2code.objectives.diffusion import CodeFusionObjective

    records = [r for r in load_source("codefusion-bash", BASH).records if r.split == "train"]
    tok = CodeTokenizer.train((t for r in records for t in (r.nl, r.code)), vocab_size=vocab)
    cfg = preset("codefusion-tiny", vocab_size=tok.vocab_size, pad_id=tok.pad_id)
    model = CodeFusion(cfg, torch.Generator().manual_seed(seed))
    examples = []
    for r in records:
        code = [*tok.encode(r.code.rstrip("\n")), tok.eos_id]
        if len(code) <= cfg.code_length:
            nl = tok.encode(r.nl)[: cfg.max_nl_length] or [tok.pad_id]
            examples.append(Example(np.array(code), np.ones(len(code), bool), {"nl": np.array(nl)}))
    objective, gen = CodeFusionObjective(), torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0, fused=True)
    rng = np.random.default_rng(seed)
    steps, loss, start = 0, float("nan"), time.perf_counter()
    model.train()
    while time.perf_counter() - start < seconds:
        batch = pad_collate([examples[i] for i in rng.integers(0, len(examples), 32)], tok.pad_id)
        value, _ = objective(model, batch, gen)
        value.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        steps, loss = steps + 1, float(value.detach())
    info = {
        "source": "trained here",
        "preset": "codefusion-tiny",
        "train_seconds": seconds,
        "steps": steps,
        "batch": 32,
        "final_loss": round(loss, 4),
        "train_examples": len(examples),
        "vocab": tok.vocab_size,
    }
    return model.eval(), tok, info


def run_task(run_dir: Path) -> str:
    """The CodeFusion benchmark a run was trained for (its ``data.source``); Bash when it names none."""
    from nl2code import config as config_io
    from nl2code.train.config import RunConfig

    source = config_io.load(RunConfig, run_dir / "config.yaml").data.source or "codefusion-bash"
    if source not in TASKS:
        raise SystemExit(
            f"{run_dir}/config.yaml: data.source {source!r} has no steps benchmark (known: {', '.join(TASKS)})"
        )
    return source


def load_codefusion_run(run_dir: Path) -> tuple[Any, Any, dict[str, Any]]:
    """The run's generation backend (``nl2code generate``'s path: its rounding, its conditioning)."""
    from nl2code.api import load_generator

    gen = load_generator(run_dir)
    if getattr(gen, "kind", None) != "codefusion":
        raise SystemExit(f"{run_dir}: not a CodeFusion run (generator kind {getattr(gen, 'kind', None)!r})")
    cfg = gen.model.cfg
    info = {
        "source": str(run_dir),
        "params": gen.model.num_parameters(),
        "d_model": cfg.d_model,
        "num_timesteps": cfg.num_timesteps,
        "code_length": cfg.code_length,
        "rounding": gen.rounding,
        "conditional": gen.conditional,
    }
    return gen.model, gen.tok, info | {"generator": gen}


def _sampler_fn(model: Any, tok: Any, info: dict[str, Any], eta: float, batch: int) -> Any:
    """``fn(utterances, steps, seed) -> top-1 program texts``: the run's generator when there is one,
    else the sampler directly (decoder rounding, conditional), with the same settings."""
    gen = info.get("generator")
    if gen is not None:
        from nl2code.api import GenerationConfig

        gen.eta = eta

        def run_gen(nls: list[str], steps: int, seed: int) -> list[str]:
            cfg = GenerationConfig(n=1, steps=steps, seed=seed, batch_size=batch)
            return [c[0].text for c in gen.generate(nls, cfg)]

        return run_gen
    from nl2code.sampling.diffusion import DiffusionSampler

    def run_sampler(nls: list[str], steps: int, seed: int) -> list[str]:
        sampler = DiffusionSampler(model, num_steps=steps, eta=eta, eos_id=tok.eos_id, max_rows=batch)
        prompts = [tok.encode(nl)[: model.cfg.max_nl_length] or [tok.pad_id] for nl in nls]
        out = sampler.generate(prompts, 1, torch.Generator().manual_seed(seed))
        return [tok.decode(c[0], skip_special=True) for c in out.ids]

    return run_sampler


def steps_table(
    model: Any,
    tok: Any,
    problems: int,
    eta: float,
    steps: tuple[int, ...] = STEPS,
    info: dict[str, Any] | None = None,
    batch: int = 64,
    seed: int = 0,
    task_name: str = "codefusion-bash",
) -> list[dict]:
    """Programs/s and top-1 accuracy (``TASKS[task_name]``'s metric, plus its extra columns) of the first
    ``problems`` test utterances (0 = all) for each step count (capped at the model's T); one progress
    line per row on stderr. ``top1`` is the metric the 2-point target is judged on."""
    from nl2code.eval.tasks import EvalContext, get_task

    path, metric, extra = TASKS[task_name]
    task = get_task(task_name)
    all_problems = task.load_problems(str(path))
    from nl2code.utils.seed import seeded_subset

    subset = dict(seeded_subset(list(all_problems.items()), problems or None, seed=0))
    nls = [p.nl for p in subset.values()]
    fn = _sampler_fn(model, tok, info or {}, eta, batch)
    rows = []
    for n_steps in steps:
        used = min(n_steps, model.cfg.num_timesteps)
        t = time.perf_counter()
        texts = fn(nls, used, seed)
        secs = time.perf_counter() - t
        samples = {tid: [text] for tid, text in zip(subset, texts, strict=True)}
        metrics = task.judge(subset, samples, EvalContext(ks=[1], progress=False)).metrics
        rows.append(
            {
                "steps": n_steps,
                "steps_used": used,
                "problems": len(subset),
                "programs_per_s": round(len(subset) / secs, 2),
                "seconds": round(secs, 2),
                "top1": round(metrics[metric], 4),
                **{m: round(metrics[m], 4) for m in (metric, *extra)},
            }
        )
        print(f"{task_name}: {n_steps} steps, {len(subset)} problems, {secs:.1f} s", file=sys.stderr, flush=True)
    top = rows[0]["top1"]
    for r in rows:
        r["delta_vs_first_points"] = round(100 * (r["top1"] - top), 2)
    return rows


def measure_codefusion(
    run: Path | None,
    problems: int,
    eta: float,
    threads: int,
    train_seconds: float,
    steps: tuple[int, ...] = STEPS,
    batch: int = 64,
) -> dict[str, Any]:
    task_name = run_task(run) if run else "codefusion-bash"
    path, metric, _ = TASKS[task_name]
    if not path.is_file():
        return {"skipped": f"no {task_name} benchmark at {path}"}
    previous = torch.get_num_threads()
    threads = set_threads(threads)
    try:
        model, tok, info = load_codefusion_run(run) if run else train_tiny_codefusion(train_seconds)
        table = steps_table(model, tok, problems, eta, steps, info, batch, task_name=task_name)
    finally:
        torch.set_num_threads(previous)
    info.pop("generator", None)
    few = [r for r in table if r["steps"] <= 50]
    within = [r["steps"] for r in few if r["delta_vs_first_points"] >= -TARGET_POINTS]
    # A model that matches nothing at the full step count cannot lose accuracy with fewer steps: the
    # target is then not assessable rather than met.
    assessable = table[0]["top1"] > 0 and bool(few)
    return {
        "task": task_name,
        "metric": metric,
        "model": info,
        "problems": table[0]["problems"],
        "eta": eta,
        "threads": threads,
        "batch": batch,
        "steps": table,
        "target_met": bool(within) if assessable else None,
        "steps_within_2_points": within,
        "note": ""
        if assessable
        else f"the model scores 0 {metric} at the first (full) step count, so the accuracy target is not "
        + ("assessable with it" if run else "assessable with it; pass --run with a trained CodeFusion run"),
    }


# -- report ---------------------------------------------------------------------------------------------


def run(
    quick: bool,
    threads: int,
    repeats: int | None,
    run_dirs: list[Path] | None,
    problems: int | None,
    eta: float,
    cf_threads: int,
    train_seconds: float | None,
    setup: GenSetup | None = None,
    steps: tuple[int, ...] = STEPS,
    batch: int = 64,
) -> dict[str, Any]:
    threads = set_threads(threads)
    machine = machine_info()
    repeats = repeats or (2 if quick else 5)
    ar = measure_ar(setup or (QUICK if quick else FULL), repeats)
    if problems is None:  # a trained run is judged on enough problems for a 2-point target to mean something
        problems = 8 if quick else (500 if run_dirs else 64)
    secs = train_seconds if train_seconds is not None else (10 if quick else 120)
    # The first run is the headline ``codefusion`` entry; further runs (other benchmarks) go to ``codefusion_more``.
    cfs = [measure_codefusion(r, problems, eta, cf_threads, secs, steps, batch) for r in (run_dirs or [None])]
    set_threads(threads)
    machine["load_after"] = load_average()
    res = {
        "quick": quick,
        "threads": threads,
        "repeats": repeats,
        "machine": machine,
        "codegen": ar,
        "codefusion": cfs[0],
        "targets": targets(ar, *cfs),
    }
    if cfs[1:]:
        res["codefusion_more"] = cfs[1:]
    return res


def targets(ar: dict[str, Any], *cfs: dict[str, Any]) -> list[dict[str, Any]]:
    """Verdicts: AR greedy tokens/s vs transformers (explained by the greedy profile when unmet) and the
    CodeFusion steps target of each run (None = not assessable)."""
    gap = ar["greedy"].get("gap", {}).get("text", "no profile taken")
    rows = [
        target_row("codegen greedy tokens/s vs transformers generate", ar["ratio_vs_peer"], TARGET_RATIO, ">=", gap)
    ]
    if "sampling" in ar:
        rows.append(
            target_row(
                "codegen sampling tokens/s vs transformers generate",
                ar["sampling"]["ratio_vs_peer"],
                TARGET_RATIO,
                ">=",
                "profiled for greedy only; see the greedy row",
            )
        )
    for cf in cfs:
        if "steps" not in cf:
            continue
        few = [r for r in cf["steps"] if r["steps"] <= 50]
        best = max((r["delta_vs_first_points"] for r in few), default=float("nan"))
        row = target_row(
            f"codefusion ({cf.get('task', 'codefusion-bash')}, {cf.get('metric', 'template_match@1')}): "
            f"fewest-points loss at <= 50 steps vs {cf['steps'][0]['steps']} steps (points)",
            best,
            -TARGET_POINTS,
            ">=",
            f"accuracy, not speed: the best step count <= 50 is {best:+.1f} points from the first row "
            f"on {cf['problems']} problems",
        )
        if cf["target_met"] is None:
            row.update(met=None, explanation=cf["note"])
        rows.append(row)
    return rows


def ar_section(ar: dict[str, Any], threads: int) -> list[str]:
    """The codegen vs transformers table (and the greedy profile) of one thread count."""
    s = ar["setup"]
    shapes = {
        "greedy": f"{s['prompts']} prompts x {s['new_tokens']} tokens",
        "sampling": f"{s['sample_prompts']} prompts x {s['samples_per_prompt']} samples x {s['new_tokens']} tokens",
    }
    rows = [
        [
            name,
            shapes[name],
            ar[name]["tokens_per_s"],
            ar[name]["peer_tokens_per_s"],
            ar[name]["ratio_vs_peer"],
            ar[name]["ratio_vs_peer_best"],
            ar[name]["ratio_vs_peer_cpu"],
        ]
        for name in ("greedy", "sampling")
    ]
    heads = ["workload", "shape", "ours tok/s", "peer tok/s", "ratio (median)", "ratio (best run)", "ratio (CPU s)"]
    parts = [
        f"## codegen vs transformers generate, {threads} torch thread(s)\n",
        md_table(heads, rows),
        f"\nGreedy token ids identical to transformers': {ar['greedy'].get('greedy_outputs_identical')}.",
    ]
    g = ar["greedy"]
    if "profile" in g:
        parts.append(f"\nProfile of one greedy run, {threads} thread(s) (self CPU time). {g['gap']['text']}.\n")
        parts += [profile_md("Ours:", g["profile"]["ours"]), "", profile_md("Peer:", g["profile"]["peer"])]
    return parts


def markdown(res: dict[str, Any], command: str) -> str:
    ar, cf = res["codegen"], res["codefusion"]
    s = ar["setup"]
    notes = [
        f"codegen: {s['d_model']} wide, {s['n_layers']} layers, vocab {s['vocab_size']}, prompts of "
        f"{s['prompt_len']} tokens; fp32, KV cache on both sides; medians of {res['repeats']} interleaved runs "
        "('best run' compares the fastest run of each side, 'CPU s' process CPU seconds). Target: ratio >= "
        f"{TARGET_RATIO}.",
    ]
    if res["quick"]:
        notes.append("--quick: short prompts and outputs, few problems; check numbers, not final ones.")
    parts = [header_md("Generation", command, res["machine"], notes)]
    if "targets" in res:
        parts += ["## Targets\n", targets_md(res["targets"]), ""]
    parts += ar_section(ar, res["threads"])
    for n, extra in res.get("by_threads", {}).items():
        parts += ["", *ar_section(extra["codegen"], int(n))]
    for one in [cf, *res.get("codefusion_more", [])]:
        parts += cf_section(one)
    return "\n".join(parts) + "\n"


def cf_section(cf: dict[str, Any]) -> list[str]:
    """One CodeFusion run's steps table."""
    task, metric = cf.get("task", "codefusion-bash"), cf.get("metric", "template_match@1")
    parts = [f"\n## CodeFusion ({task}): steps vs speed and {metric}\n"]
    if "skipped" in cf:
        parts.append(f"Skipped: {cf['skipped']}.")
    else:
        cols = [k for k in cf["steps"][0] if "@" in k]
        parts.append(
            f"Model: {cf['model']}. First {cf['problems']} test problems of {task}, top-1 (one sample per "
            f"problem, seed 0), eta {cf['eta']}, {cf['threads']} thread(s), batch {cf['batch']}. Target: <= 50 "
            f"steps within {TARGET_POINTS:g} points of the first row's top-1 (met: {cf['target_met']})."
            f"{' Note: ' + cf['note'] + '.' if cf.get('note') else ''}\n"
        )
        rows = [
            [
                r["steps"] if r["steps_used"] == r["steps"] else f"{r['steps']} (model T: {r['steps_used']})",
                r["programs_per_s"],
                *(r[c] for c in cols),
                r["delta_vs_first_points"],
            ]
            for r in cf["steps"]
        ]
        heads = [
            "steps",
            "programs/s",
            *(c.replace("_", " ") for c in cols),
            f"delta in {metric} vs first row (points)",
        ]
        parts.append(md_table(heads, rows))
    return parts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short prompts and outputs, 8 problems (< 2 minutes)")
    ap.add_argument(
        "--threads",
        default="0",
        help="torch threads for the AR comparison (0 = all cores); a comma "
        "list measures each count, the first one is the headline",
    )
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per side (default 2 quick, 5 full)")
    ap.add_argument(
        "--run",
        type=Path,
        action="append",
        default=None,
        help="a trained CodeFusion run directory (nl2code train) of codefusion-bash or codefusion-cf; repeat for "
        "several (the first is the headline 'codefusion' entry)",
    )
    ap.add_argument(
        "--problems", type=int, default=None, help="test problems (0 = all; default 8 quick, 500 with --run, else 64)"
    )
    ap.add_argument(
        "--steps", default=",".join(map(str, STEPS)), help="denoising step counts, the first is the reference"
    )
    ap.add_argument("--batch", type=int, default=64, help="CodeFusion sequences denoised together")
    ap.add_argument("--eta", type=float, default=1.0, help="reverse-step noise (1 = the API default, 0 = DDIM)")
    ap.add_argument(
        "--cf-threads",
        type=int,
        default=1,
        help="torch threads for CodeFusion sampling (0 = all cores); default 1: its per-step tensors are small, "
        "and with other processes on the cores 2 threads measured 19x slower than 1",
    )
    ap.add_argument("--train-seconds", type=float, default=None, help="in-script CodeFusion training time (no --run)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    for r in args.run or []:
        if not (r / "config.yaml").is_file():
            ap.error(f"--run {r}: no config.yaml there (not a run directory)")
    command = " ".join(["python benchmarks/generation.py", *(sys.argv[1:] if argv is None else argv)])
    counts = [int(t) for t in args.threads.split(",")]
    steps = tuple(int(x) for x in args.steps.split(","))
    res = run(
        args.quick,
        counts[0],
        args.repeats,
        args.run,
        args.problems,
        args.eta,
        args.cf_threads,
        args.train_seconds,
        steps=steps,
        batch=args.batch,
    )
    res["command"] = command
    if counts[1:]:
        res["by_threads"] = {}
        for n in counts[1:]:
            got = set_threads(n)
            ar = measure_ar(QUICK if args.quick else FULL, res["repeats"])
            res["by_threads"][str(got)] = {"threads": got, "load_after": load_average(), "codegen": ar}
    text = markdown(res, command)
    write_results("generation", res, text, args.out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
