"""What ``nl2code train`` does around the loop for ``init_from``, ``adapters`` and ``train.trainable``.

* :func:`prepare_model`: load ``init_from``'s final weights; with ``adapters``, hold the frozen
  base Linears in NF4 when asked (QLoRA-style) and wrap the target Linears in LoRA adapters.
  An NF4 base from ``init_from`` is read one Linear at a time straight into NF4
  (:func:`streams_init`), so the full-precision model never exists in memory.
* :func:`set_trainable`: per stage, choose what trains: everything, the adapters only, or the
  MoE routers only (router fine-tuning of a merged MoE), and count it.
* :func:`finalize`: after training, turn the run's weights into a plain dense model
  (NF4 bases dequantised, adapters merged: ``W + (alpha / r) B A``, streamed one layer at a time) so
  ``generate``, ``eval`` and ``merge-moe`` read it like any other run, and keep the adapters
  beside it (``adapter.safetensors``, ``adapter.json``).

Checkpoints hold the wrapped model (adapters and frozen base), so ``--resume`` works unchanged.
The merged model computes what was trained: with an NF4 base it is the *dequantised* base plus
the update, not the original full-precision base plus the update.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from nl2code.config import ConfigError, to_dict
from nl2code.hf.safetensors_io import Entry, Planned
from nl2code.models.lora import LoRALinear, ParamCount, apply_lora, count_parameters, lora_state_dict
from nl2code.models.quant import LinearReader, NF4Linear, quantize_linears, replace_module, row_slices
from nl2code.rundir import ADAPTER_FILE, ADAPTER_INFO, RunDir
from nl2code.train.config import AdapterConfig, RunConfig
from nl2code.utils.io import atomic_path, atomic_write
from nl2code.utils.seed import derive_seed

ROUTER_PATTERN = ".router."  # MoE router parameters: blocks.N.mlp.router.{gate,noise}.weight
QUANT_EXCLUDE = [r"router\.(gate|noise)"]  # never quantised: tiny, and may be trained


def load_init_weights(model: nn.Module, run_dir: str | Path, source: str = "<config>") -> None:
    """Load the final weights of run ``run_dir`` into ``model`` (every tensor must match)."""
    run = RunDir(run_dir)
    try:
        run.load_weights(model, strict=True, device="cpu")
    except (RuntimeError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{source}: init_from: {run.weights_file} does not fit the configured model ({first})") from e


def streams_init(cfg: RunConfig) -> bool:
    """Whether :func:`prepare_model` reads ``init_from`` straight into an NF4 model: the caller then
    builds the model on the meta device (``torch.device("meta")``), never in full precision."""
    return (
        cfg.init_from is not None
        and cfg.adapters is not None
        and cfg.adapters.quantize_base == "nf4"
        and getattr(type(cfg.model), "kind", None) == "codegen"
    )


def _quantize(cfg: AdapterConfig, read: LinearReader | None = None) -> Callable[[nn.Module], list[str]]:
    return lambda model: quantize_linears(
        model, exclude=QUANT_EXCLUDE, block_size=cfg.block_size, double_quant=cfg.double_quant, read=read
    )


def load_init_quantized(model: nn.Module, cfg: RunConfig, source: str = "<config>") -> nn.Module:
    """``init_from``'s weights as an NF4 model, one Linear at a time (``model``: the meta-device
    model, for its config). Gives the same tensors as :func:`load_init_weights` then quantising."""
    from nl2code.hf.convert import load_weights

    assert cfg.adapters is not None
    run = RunDir(cfg.init_from)
    param = next(model.parameters())
    try:
        return load_weights(
            model.cfg, run.weights_file, dtype=param.dtype, quantize=lambda m, read: _quantize(cfg.adapters, read)(m)
        )
    except (RuntimeError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{source}: init_from: {run.weights_file} does not fit the configured model ({first})") from e


def apply_adapters(
    model: nn.Module, cfg: AdapterConfig, seed: int, source: str = "<config>", quantize: bool = True
) -> list[str]:
    """Quantise the base (when asked and ``quantize``) and wrap the target Linears in LoRA; returns
    the wrapped names.

    Routers are never quantised (they are tiny, and may be trained). A fixed ``seed`` gives the
    same adapter init on every rank and after a resume.
    """
    if cfg.quantize_base == "nf4" and quantize:
        _quantize(cfg)(model)
    gen = torch.Generator().manual_seed(seed)
    try:
        return apply_lora(
            model,
            cfg.targets,
            r=cfg.r,
            alpha=cfg.alpha,
            dropout=cfg.dropout,
            rslora=cfg.rslora,
            freeze=True,
            generator=gen,
        )
    except ValueError as e:
        raise ConfigError(f"{source}: adapters.targets: {e}") from None


def prepare_model(model: nn.Module, cfg: RunConfig, source: str, say: Callable[[str], None]) -> nn.Module:
    """``init_from`` weights, then adapters; returns the model (``model`` itself, changed in place,
    unless it is on the meta device: see :func:`streams_init`, then a new one)."""
    streamed = streams_init(cfg) and next(model.parameters()).is_meta
    if streamed:
        model = load_init_quantized(model, cfg, source)
        say(f"initialised from {RunDir(cfg.init_from).weights_file} (streamed into NF4)")
    elif cfg.init_from is not None:
        load_init_weights(model, cfg.init_from, source)
        say(f"initialised from {RunDir(cfg.init_from).weights_file}")
    elif getattr(cfg.model, "encoder_init", None):  # CodeFusion's E from a pre-trained T5 encoder
        from nl2code.hf.t5 import load_encoder

        try:
            load_encoder(model.t5, cfg.model.encoder_init)
        except ValueError as e:
            raise ConfigError(f"{source}: model.encoder_init: {e}") from None
        say(f"encoder initialised from {cfg.model.encoder_init}")
    if cfg.adapters is not None:
        names = apply_adapters(model, cfg.adapters, derive_seed(cfg.train.seed, 0, 7), source, quantize=not streamed)
        a = cfg.adapters
        base = "NF4" if a.quantize_base == "nf4" else "full-precision"
        say(f"adapters: LoRA r={a.r} alpha={a.alpha:g} on {len(names)} layers ({base} frozen base)")
    return model


def set_trainable(model: nn.Module, mode: str, adapters: bool, source: str = "<config>") -> ParamCount:
    """Make exactly the parameters of ``mode`` trainable and count them.

    ``auto``: every parameter, or only the adapters when ``adapters``; ``router``: only the MoE
    routers (plus the adapters when ``adapters``).
    """
    names = [name for name, _ in model.named_parameters()]
    if mode == "router" and not any(ROUTER_PATTERN in f".{n}" for n in names):
        raise ConfigError(f"{source}: train.trainable: 'router' needs a model with MoE layers (model.moe)")
    for name, p in model.named_parameters():
        is_adapter = name.endswith((".lora_a", ".lora_b"))
        if mode == "router":
            p.requires_grad_(ROUTER_PATTERN in f".{name}" or (adapters and is_adapter))
        else:
            p.requires_grad_(is_adapter if adapters else True)
    return count_parameters(model)


def dequantize_linears(model: nn.Module) -> list[str]:
    """Replace every :class:`NF4Linear` by an ``nn.Linear`` holding its dequantised weight."""
    names = [name for name, m in model.named_modules() if isinstance(m, NF4Linear)]
    for name in names:
        q = model.get_submodule(name)
        linear = nn.Linear(q.in_features, q.out_features, bias=q.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(q.dequantized_weight(torch.float32))
            if q.bias is not None:
                linear.bias.copy_(q.bias)
        replace_module(model, name, linear.requires_grad_(False))
    return names


def finalize(model: nn.Module, cfg: RunConfig, run_dir: RunDir | Path, trainable: str = "auto") -> None:
    """Rewrite the run's weights (the trained, wrapped model) as the merged dense model.

    Writes the adapter tensors and ``adapter.json`` (settings, wrapped layers, parameter counts
    under the last stage's ``trainable``) first; the weights file is replaced last and atomically,
    so ``--resume`` redoes an interrupted finalize.
    """
    assert cfg.adapters is not None
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    counts = set_trainable(model, trainable, adapters=True)
    run.load_weights(model, strict=True, device="cpu")  # the final (or EMA) weights
    model.cpu()
    adapters = {k: v.contiguous() for k, v in lora_state_dict(model).items()}
    with atomic_path(run.adapter_file) as tmp:
        save_file(adapters, str(tmp), metadata={"format": "pt", "adapter": json.dumps(to_dict(cfg.adapters))})
    info: dict[str, Any] = {
        "adapters": to_dict(cfg.adapters),
        "init_from": cfg.init_from,
        "layers": sorted({k.rsplit(".", 1)[0] for k in adapters}),
        "adapter_parameters": sum(v.numel() for v in adapters.values()),
        "trainable": counts.trainable,
        "total": counts.total,
        "percent": round(counts.percent, 4),
    }
    atomic_write(run.adapter_info_file, json.dumps(info, indent=1) + "\n")
    entries, metadata = merged_entries(model)
    run.write_weights(entries, metadata)


def _merged_weight(layer: nn.Module) -> torch.Tensor:
    """The dense weight of a :class:`LoRALinear` (update added) or an :class:`NF4Linear` (dequantised), in the base
    weight's dtype; computed in float32 a slice of rows at a time, so only the result is full size."""
    base = layer.base if isinstance(layer, LoRALinear) else layer
    dtype = base.weight_dtype if isinstance(base, NF4Linear) else base.weight.dtype
    out = torch.empty(layer.out_features, layer.in_features, dtype=dtype)
    adapted = isinstance(layer, LoRALinear) and not layer.merged
    for r0, r1 in row_slices(layer.out_features, layer.in_features):
        if isinstance(base, NF4Linear):
            rows = base.dequantized_rows(r0, r1, torch.float32)
        else:
            rows = base.weight.detach()[r0:r1].float()
        if adapted:
            rows += (layer.lora_b.detach()[r0:r1].float() @ layer.lora_a.detach().float()) * layer.scale
        out[r0:r1] = rows
    return out


def merged_entries(model: nn.Module) -> tuple[list[Entry], dict[str, str]]:
    """The merged dense model's tensors for a streamed write, and the file's metadata.

    Each adapted or NF4 layer's dense weight is computed only when its bytes are written, so a 7B
    QLoRA run never holds a second, full-precision model (merging in place did). The names are the
    dense model's (``x.base.weight`` becomes ``x.weight``); tied tensors are written once, under the
    name ``safetensors.torch.save_model`` keeps (the first in sorted order), the others named in the
    metadata as it does, so ``RunDir.load_weights`` reads the file like any other run's.
    """
    layers = {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    layers |= {n: m for n, m in model.named_modules() if isinstance(m, NF4Linear) and n.rsplit(".", 1)[0] not in layers}
    entries: list[Entry] = []
    for name, layer in layers.items():
        shape = (layer.out_features, layer.in_features)
        base = layer.base if isinstance(layer, LoRALinear) else layer
        dtype = base.weight_dtype if isinstance(base, NF4Linear) else base.weight.dtype
        entries.append((f"{name}.weight", Planned(shape, dtype, lambda m=layer: _merged_weight(m))))
        if base.bias is not None:
            entries.append((f"{name}.bias", lambda b=base.bias: b.detach()))
    inside = tuple(f"{name}." for name in layers)
    shared: dict[int, list[str]] = {}
    plain = {k: v for k, v in model.state_dict().items() if not k.startswith(inside)}
    for key, t in plain.items():
        shared.setdefault(t.untyped_storage().data_ptr(), []).append(key)
    metadata = {"format": "pt"}
    for names in shared.values():
        keep, *dropped = sorted(names)
        entries.append((keep, lambda t=plain[keep]: t))
        metadata |= dict.fromkeys(dropped, keep)
    return entries, metadata


__all__ = [
    "ADAPTER_FILE",
    "ADAPTER_INFO",
    "apply_adapters",
    "dequantize_linears",
    "finalize",
    "load_init_quantized",
    "merged_entries",
    "load_init_weights",
    "prepare_model",
    "streams_init",
    "set_trainable",
]
