"""Merge dense runs into one sparse mixture-of-experts run, with mergekit-moe's semantics.

From a base run and E expert runs of the same architecture (normally fine-tuned from the base),
build a CodeGen MoE whose feed-forward block in every layer holds the E experts' FFNs (expert e in
slot e) and whose other weights (embeddings, attention, norms, LM head) come from the base. The
router of layer l gets one gate vector per expert, chosen by ``gate_mode``:

* ``hidden``: the router's own input at layer l (the block's normalised MLP input,
  ``mlp_norm(x + attn(x))``) from the base model, averaged over each prompt's tokens, then over
  the expert's ``positive_prompts``, minus the same average over its ``negative_prompts``, and
  L2-normalised. (mergekit takes the residual stream *entering* the block instead, which the
  router never sees.)
* ``hidden_last``: the same with each prompt's last token instead of its token mean (mergekit's
  current ``hidden``).
* ``cheap_embed``: the token embeddings averaged over all tokens of all positive prompts, minus
  the same for the negatives, L2-normalised; one vector reused for every layer (mergekit sums
  instead of averaging, which differs only in how negatives are weighed).
* ``random``: ``N(0, 1)`` entries, not normalised (from ``seed``).

Routing is Mixtral's: softmax over the gate logits, top ``experts_per_token``, renormalised. As in
mergekit, per-expert ``noise_scale`` adds ``N(0, noise_scale^2)`` noise to the copied FFN weights
and ``residual_scale`` multiplies the expert's down projection.

Softmax routing ignores anything the gate vectors share, so vectors pointing almost the same way
route almost at random: :func:`collinearity` reports, per layer, the largest cosine between two
gate vectors (a warning above :data:`COLLINEAR_COS`) and mergekit's condition number. The warning
uses the cosine, not mergekit's ``cond > 5``: with each expert's negatives being the other
experts' prompts the vectors sum to about zero (rank E-1, condition number ~1e7) while routing
stays sharp, which the condition number would wrongly flag.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from nl2code.config import ConfigError, load, to_dict
from nl2code.data.tokenizer import CodeTokenizer
from nl2code.models.codegen import CodeGenLM
from nl2code.models.moe import MoEConfig
from nl2code.rundir import RunDir
from nl2code.train.config import RunConfig

GateMode = Literal["hidden", "hidden_last", "cheap_embed", "random"]
# Largest tolerated cosine between two gate vectors. For two unit vectors with cosine c,
# mergekit's condition-number test (cond > 5) fires at c > 12/13 = 0.923.
COLLINEAR_COS = 0.92
_EXPERT_KEY = re.compile(r"^blocks\.(\d+)\.mlp\.experts\.(\d+)\.(.+)$")
_ROUTER_KEY = re.compile(r"^blocks\.(\d+)\.mlp\.router\.gate\.weight$")


@dataclass(frozen=True)
class ExpertSpec:
    """One expert: a run directory and the prompts that describe it."""

    source_model: str = field(metadata={"help": "run directory of the expert"})
    positive_prompts: list[str] = field(default_factory=list, metadata={"help": "text this expert should get"})
    negative_prompts: list[str] = field(default_factory=list, metadata={"help": "text it should not get"})
    noise_scale: float = field(default=0.0, metadata={"help": "std of Gaussian noise added to its FFN weights"})
    residual_scale: float = field(default=1.0, metadata={"help": "factor on its down projection"})


@dataclass(frozen=True)
class MergeConfig:
    """A merge-moe YAML file (mergekit-moe's field names, run directories as models)."""

    base_model: str = field(metadata={"help": "run directory of the base model (all non-FFN weights)"})
    experts: list[ExpertSpec] = field(metadata={"help": "the experts, in slot order"})
    gate_mode: GateMode = field(default="hidden", metadata={"help": "hidden | hidden_last | cheap_embed | random"})
    experts_per_token: int = field(default=2, metadata={"help": "k of top-k routing"})
    seed: int = field(default=0, metadata={"help": "seed of random gates and of noise_scale"})


def load_merge_config(path: str | Path) -> MergeConfig:
    """Read and check a merge YAML; every problem is a ConfigError naming the file and key."""
    cfg = load(MergeConfig, path)
    where = str(path)
    if not cfg.experts:
        raise ConfigError(f"{where}: experts: need at least one expert")
    if not 1 <= cfg.experts_per_token <= len(cfg.experts):
        raise ConfigError(f"{where}: experts_per_token: must be between 1 and the number of experts "
                          f"({len(cfg.experts)}), got {cfg.experts_per_token}")
    for i, e in enumerate(cfg.experts):
        if cfg.gate_mode != "random" and not e.positive_prompts:
            raise ConfigError(f"{where}: experts[{i}].positive_prompts: gate_mode {cfg.gate_mode} needs "
                              "at least one prompt (or use gate_mode: random)")
        for key in ("positive_prompts", "negative_prompts"):
            for j, text in enumerate(getattr(e, key)):
                if not text.strip():
                    raise ConfigError(f"{where}: experts[{i}].{key}[{j}]: empty prompt")
        if e.noise_scale < 0:
            raise ConfigError(f"{where}: experts[{i}].noise_scale: must be >= 0, got {e.noise_scale}")
    return cfg


# -- gate vectors ---------------------------------------------------------------------------------


@torch.no_grad()
def router_inputs(model: CodeGenLM, ids: Sequence[int]) -> torch.Tensor:
    """(L, T, D) what each layer's router would see for the token sequence ``ids``."""
    seen: list[torch.Tensor] = []
    # a parallel block (CodeGen) routes its attention norm's output: it has no MLP norm
    norms = [b.attn_norm if b.mlp_norm is None else b.mlp_norm for b in model.blocks]
    hooks = [n.register_forward_hook(lambda _m, _i, out: seen.append(out[0].float())) for n in norms]
    try:
        model(torch.tensor([list(ids)], device=model.embed.weight.device))
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(seen)


def _encode_all(encode: Callable[[str], list[int]], prompts: Sequence[str], max_len: int, what: str) -> list[list[int]]:
    out = []
    for j, text in enumerate(prompts):
        ids = encode(text)[:max_len]
        if not ids:
            raise ConfigError(f"{what}[{j}]: {text!r} encodes to no tokens")
        out.append(ids)
    return out


def prompt_mean(model: CodeGenLM, encode: Callable[[str], list[int]], prompts: Sequence[str],
                mode: GateMode, what: str = "prompts") -> torch.Tensor:
    """(L, D) mean router input over ``prompts`` (token mean, or last token for ``hidden_last``);
    for ``cheap_embed`` (1, D): the embedding rows averaged over all tokens of all prompts."""
    seqs = _encode_all(encode, prompts, model.cfg.max_seq_len, what)
    if mode == "cheap_embed":
        flat = torch.tensor([t for ids in seqs for t in ids], device=model.embed.weight.device)
        return model.embed.weight[flat].detach().float().mean(0, keepdim=True)
    per_prompt = []
    for ids in seqs:
        h = router_inputs(model, ids)  # (L, T, D)
        per_prompt.append(h[:, -1] if mode == "hidden_last" else h.mean(1))
    return torch.stack(per_prompt).mean(0)


def gate_vectors(model: CodeGenLM, encode: Callable[[str], list[int]], experts: Sequence[ExpertSpec],
                 mode: GateMode, generator: torch.Generator | None = None, where: str = "experts") -> torch.Tensor:
    """(L, E, D) router weights: row e of layer l is expert e's gate vector (see the module doc)."""
    L, D, E = model.cfg.n_layers, model.cfg.d_model, len(experts)
    if mode == "random":
        return torch.randn(L, E, D, generator=generator)
    was_training = model.training
    model.eval()
    rows = []
    for i, e in enumerate(experts):
        v = prompt_mean(model, encode, e.positive_prompts, mode, f"{where}[{i}].positive_prompts")
        if e.negative_prompts:
            v = v - prompt_mean(model, encode, e.negative_prompts, mode, f"{where}[{i}].negative_prompts")
        norm = v.norm(dim=-1, keepdim=True)
        if bool((norm < 1e-12).any()):
            raise ConfigError(f"{where}[{i}]: positive and negative prompts give the same mean; no direction left")
        rows.append((v / norm).expand(L, D))
    model.train(was_training)
    return torch.stack(rows, dim=1)


def collinearity(gates: torch.Tensor) -> list[dict[str, float]]:
    """Per layer of ``gates`` (L, E, D): the largest pairwise cosine and ``cond`` (mergekit's test)."""
    out = []
    for w in gates.double():
        unit = F.normalize(w, dim=-1)
        cos = unit @ unit.T
        off = cos[~torch.eye(len(w), dtype=torch.bool)]
        out.append({
            "max_cosine": float(off.max()) if off.numel() else 0.0,
            "condition": float(torch.linalg.cond(w)) if len(w) > 1 else 1.0,
        })  # fmt: skip
    return out


# -- building the merged model --------------------------------------------------------------------


def _model_dict(cfg: Any) -> dict[str, Any]:
    d = to_dict(cfg)
    d.pop("dropout", None)  # training-only: experts may differ there
    return d


def moe_state_dict(moe: CodeGenLM, base: dict[str, torch.Tensor], experts: Sequence[dict[str, torch.Tensor]],
                   specs: Sequence[ExpertSpec], gates: torch.Tensor,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """State dict of ``moe``: expert FFNs from ``experts``, routers from ``gates``, the rest from ``base``."""
    out = {}
    for key, ref in moe.state_dict().items():
        if m := _EXPERT_KEY.match(key):
            layer, e, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            t = experts[e][f"blocks.{layer}.mlp.{rest}"].clone().float()
            if specs[e].noise_scale > 0:
                t += torch.randn(t.shape, generator=generator) * specs[e].noise_scale
            if rest.startswith("down.") and specs[e].residual_scale != 1.0:
                t *= specs[e].residual_scale
        elif m := _ROUTER_KEY.match(key):
            t = gates[int(m.group(1))]
        else:
            t = base[key]
        out[key] = t.to(ref.dtype)
    return out


def non_ffn_difference(base: dict[str, torch.Tensor], expert: dict[str, torch.Tensor]) -> float:
    """Largest |expert - base| outside the feed-forward blocks (what the merge discards)."""
    diffs = [float((expert[k].float() - v.float()).abs().max()) for k, v in base.items()
             if ".mlp." not in k and v.numel()]
    return max(diffs, default=0.0)


def _tokenizer_digest(run_dir: Path) -> str:
    return hashlib.sha256(CodeTokenizer.file_in(RunDir(run_dir).tokenizer_dir).read_bytes()).hexdigest()


def merge(
    cfg: MergeConfig, where: str = "<merge>", say: Callable[[str], None] = lambda _: None
) -> tuple[RunConfig, CodeGenLM, Path, dict[str, Any]]:
    """Build the MoE. Returns ``(run_config, model, base_run_dir, report)``; ``where`` names the
    merge config in errors, ``say`` prints warnings."""
    from nl2code.api import RunError, load_run

    def open_run(key: str, run_dir: str) -> Any:
        try:
            return load_run(run_dir)
        except RunError as e:
            raise ConfigError(f"{where}: {key}: {e}") from None

    base = open_run("base_model", cfg.base_model)
    kind = getattr(type(base.config.model), "kind", None)
    if kind != "codegen" or base.config.model.moe is not None:
        raise ConfigError(f"{where}: base_model: {cfg.base_model} must be a dense codegen run (got {kind}"
                          f"{', already MoE' if kind == 'codegen' else ''})")
    base_sd = {k: v.detach().cpu() for k, v in base.model.state_dict().items()}
    expert_sds, dropped = [], []
    for i, spec in enumerate(cfg.experts):
        key = f"experts[{i}].source_model"
        run = open_run(key, spec.source_model)
        if _tokenizer_digest(run.run_dir) != _tokenizer_digest(base.run_dir):
            raise ConfigError(f"{where}: {key}: its tokenizer differs from base_model's (fine-tune experts "
                              "from the base, e.g. with init_from)")
        want, got = _model_dict(base.config.model), _model_dict(run.config.model)
        if want != got:
            diff = next(k for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k))
            raise ConfigError(f"{where}: {key}: model.{diff} is {got.get(diff)!r} but base_model's is "
                              f"{want.get(diff)!r} (experts need the base architecture)")
        sd = {k: v.detach().cpu() for k, v in run.model.state_dict().items()}
        delta = non_ffn_difference(base_sd, sd)
        if delta > 0:
            dropped.append(f"experts[{i}] ({spec.source_model}) differs from base_model outside the FFNs "
                           f"(max |delta| {delta:.3g}); only its FFNs enter the MoE")
        expert_sds.append(sd)
    gen = torch.Generator().manual_seed(cfg.seed)
    gates = gate_vectors(base.model, base.tokenizer.encode, cfg.experts, cfg.gate_mode, gen, f"{where}: experts")
    layers = collinearity(gates)
    warnings = list(dropped)
    for layer, stats in enumerate(layers):
        if stats["max_cosine"] > COLLINEAR_COS:
            warnings.append(f"layer {layer}: gate vectors nearly collinear (max cosine {stats['max_cosine']:.3f} > "
                            f"{COLLINEAR_COS}, condition number {stats['condition']:.3g}); the experts' prompts "
                            "may be too similar (try negative_prompts)")
    for w in warnings:
        say(f"warning: {w}")
    moe_cfg = MoEConfig(n_experts=len(cfg.experts), top_k=cfg.experts_per_token, gating="softmax",
                        renormalize=True, every=1)
    model_cfg = dataclasses.replace(base.config.model, moe=moe_cfg)
    model = CodeGenLM(model_cfg)
    model.load_state_dict(moe_state_dict(model, base_sd, expert_sds, cfg.experts, gates, gen), strict=True)
    run_cfg = dataclasses.replace(base.config, model=model_cfg, init_from=None, adapters=None)
    report = {
        "base_model": cfg.base_model,
        "experts": [e.source_model for e in cfg.experts],
        "gate_mode": cfg.gate_mode,
        "experts_per_token": cfg.experts_per_token,
        "layers": layers,
        "warnings": warnings,
        "parameters": model.num_parameters(),
    }
    return run_cfg, model, base.run_dir, report


def write_run(out: Path, run_cfg: RunConfig, model: torch.nn.Module, tokenizer_from: Path) -> None:
    """A run directory ``generate``/``eval``/``train init_from`` read: config, tokenizer, weights, spec."""
    from nl2code.generation.spec import save_spec, spec_from_config

    run = RunDir(out)
    run.path.mkdir(parents=True, exist_ok=True)
    run.copy_tokenizer_from(RunDir(tokenizer_from))
    run.save_config(run_cfg)
    run.save_weights(model)
    save_spec(run, spec_from_config(run_cfg))


__all__ = [
    "COLLINEAR_COS",
    "ExpertSpec",
    "GateMode",
    "MergeConfig",
    "collinearity",
    "gate_vectors",
    "load_merge_config",
    "merge",
    "moe_state_dict",
    "non_ffn_difference",
    "prompt_mean",
    "router_inputs",
    "write_run",
]
