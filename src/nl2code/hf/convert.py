"""Import a transformers checkpoint folder as a :class:`CodeGenLM`, and export one back.

Import reads ``config.json``, maps it to a :class:`CodeGenConfig` through the family module of its
``model_type`` (:data:`FAMILIES`), builds the model on the meta device (no random init), allocates
it once in the target dtype and reads every checkpoint tensor straight into its parameter
(``safetensors_io``): peak memory is the model plus one converted tensor. Export writes the inverse
mapping, sharded when asked, with ``config.json``, ``generation_config.json``, the tokenizer and
``nl2code.json`` (how prompts were formatted).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from nl2code.hf import codegen as codegen_family
from nl2code.hf import llama as llama_family
from nl2code.hf.llama import UnsupportedCheckpoint
from nl2code.hf.mapping import fill, split
from nl2code.hf.safetensors_io import CheckpointFiles, write_checkpoint
from nl2code.models.codegen import CodeGenConfig, CodeGenLM, rotary_of
from nl2code.models.quant import LinearReader

FAMILIES: dict[str, ModuleType] = {
    "llama": llama_family,
    "mistral": llama_family,
    "qwen2": llama_family,
    "mixtral": llama_family,
    "codegen": codegen_family,
}
DEFAULT_MAX_SEQ_LEN = 8192  # rotary tables and KV caches are sized by this, not the 128k some configs claim
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Imported:
    """An imported checkpoint: the model, its HF ``config.json`` and what it was stored as."""

    model: CodeGenLM
    hf_config: dict[str, Any]
    model_type: str
    source_dtype: torch.dtype
    nbytes: int


def read_config(hf_dir: Path) -> dict[str, Any]:
    path = hf_dir / "config.json"
    if not path.is_file():
        raise UnsupportedCheckpoint(f"{path}: missing (is {hf_dir} a transformers checkpoint folder?)")
    return json.loads(path.read_text(encoding="utf-8"))


def family_of(config: dict[str, Any], where: str) -> ModuleType:
    kind = config.get("model_type")
    if kind not in FAMILIES:
        raise UnsupportedCheckpoint(f"{where}: model_type {kind!r} is not supported (supported: {', '.join(FAMILIES)})")
    return FAMILIES[kind]


def materialize(cfg: CodeGenConfig, dtype: torch.dtype) -> CodeGenLM:
    """An uninitialised model of ``cfg`` in ``dtype`` on the CPU (memory allocated, never written)."""
    with torch.device("meta"):
        model = CodeGenLM(cfg)
    model = model.to(dtype).to_empty(device="cpu")
    model.rotary = rotary_of(cfg)  # derived fp32 buffers: rebuild, never read
    if cfg.tie_embeddings:  # to_empty gives each module its own tensor: tie again
        model.lm_head.weight = model.embed.weight
    return model


def _ignorable(name: str, cfg: CodeGenConfig) -> bool:
    return (
        name.endswith("rotary_emb.inv_freq")
        or name.endswith(codegen_family.IGNORED_SUFFIXES)
        or (cfg.tie_embeddings and name == "lm_head.weight")  # tied checkpoints may still carry it
    )


def import_model(hf_dir: str | Path, dtype: str = "auto", max_seq_len: int = DEFAULT_MAX_SEQ_LEN) -> Imported:
    """Load the checkpoint folder ``hf_dir`` as a CodeGenLM in ``dtype`` (``auto``: as stored)."""
    hf_dir = Path(hf_dir)
    config = read_config(hf_dir)
    where = str(hf_dir / "config.json")
    family = family_of(config, where)
    with CheckpointFiles(hf_dir) as files:  # refuses pickled weights before anything else is read
        try:
            cfg = family.config_from_hf(config, where, max_seq_len)
        except KeyError as e:
            raise UnsupportedCheckpoint(f"{where}: missing key {e}") from None
        stored = files.dtype()
        model = materialize(cfg, stored if dtype == "auto" else DTYPES[dtype])
        params = {name: p.detach() for name, p in model.named_parameters()}
        links = family.links(cfg, set(files.tensors))
        uncovered = set(params) - {ln.ours for ln in links}
        if uncovered:
            raise UnsupportedCheckpoint(f"{where}: no checkpoint tensor for {sorted(uncovered)[:3]}")
        used = fill(params, links, files)
        extra = sorted(n for n in set(files.tensors) - used if not _ignorable(n, cfg))
        if extra:
            raise UnsupportedCheckpoint(
                f"{hf_dir}: unexpected tensors {extra[:3]} (an architecture option nl2code does not model?)"
            )
        nbytes = files.nbytes
    return Imported(model.eval(), config, config["model_type"], stored, nbytes)


def load_weights(
    cfg: CodeGenConfig,
    path: str | Path,
    *,
    dtype: torch.dtype | None = None,
    quantize: Callable[[CodeGenLM, LinearReader], list[str]] | None = None,
) -> CodeGenLM:
    """A run's ``model.safetensors`` (our names) as a CodeGenLM, streamed, without random init.

    Args:
        dtype: of the model's tensors (default: the stored dtype).
        quantize: called with the model still on the meta device and a reader of each Linear's
            weight and bias (in ``dtype``); it replaces the Linears it quantises (e.g.
            :func:`nl2code.models.quant.quantize_linears`) and returns their names. Only the other
            tensors are then allocated, so the full-precision model never exists in memory.
    """
    path = Path(path)
    with CheckpointFiles(path.parent, file=path) as files:
        dtype = dtype or files.dtype()
        names = set(files.tensors)
        if cfg.tie_embeddings:  # safetensors keeps one name of a tied pair, not always the embedding's
            if "embed.weight" not in names and "lm_head.weight" in names:
                files.tensors["embed.weight"] = files.tensors["lm_head.weight"]
                names.add("embed.weight")
            names.discard("lm_head.weight")
        if quantize is None:
            model, read = materialize(cfg, dtype), set()
        else:
            with torch.device("meta"):
                model = CodeGenLM(cfg).to(dtype)

            def linear(name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
                bias = f"{name}.bias"
                weight = files.read(f"{name}.weight", dtype=dtype)
                return weight, files.read(bias, dtype=dtype) if bias in names else None

            quantized = quantize(model, linear)
            read = {f"{n}.{k}" for n in quantized for k in ("weight", "bias")} & names
            model = _allocate(model, cfg)
        params = {name: p.detach() for name, p in model.named_parameters()}
        if names != set(params) | read:
            expected = set(params) | read
            missing, extra = sorted(expected - names), sorted(names - expected)
            raise ValueError(f"{path}: missing {missing[:3]} / unexpected {extra[:3]} tensors")
        with torch.no_grad():
            for name, p in params.items():
                files.read_into(name, p.view(-1))
    return model.eval()


def _allocate(model: CodeGenLM, cfg: CodeGenConfig) -> CodeGenLM:
    """Give the tensors still on the meta device CPU memory (uninitialised); keep the others."""
    model._apply(lambda t: torch.empty_like(t, device="cpu") if t.is_meta else t)
    model.rotary = rotary_of(cfg)  # derived fp32 buffers: rebuild, never read
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    return model


# -- export ----------------------------------------------------------------------------------------


class ExportRefused(ValueError):
    """A model no transformers architecture expresses; the message says why for each candidate."""


def export_target(cfg: CodeGenConfig) -> tuple[str, ModuleType]:
    """The HF model_type ``cfg`` exports to and its family module; ExportRefused with every reason."""
    reasons = []
    for module in (llama_family, codegen_family):
        try:
            return module.check_exportable(cfg), module
        except UnsupportedCheckpoint as e:
            reasons.append(str(e))
    raise ExportRefused("no transformers architecture computes this model: " + " | ".join(reasons))


def export_model(
    model: CodeGenLM,
    out_dir: str | Path,
    tokenizer: Any | None = None,
    dtype: torch.dtype = torch.float32,
    max_shard_bytes: int | None = None,
    prompt_format: str = "code",
) -> str:
    """Write ``model`` as a transformers checkpoint folder; returns its model_type.

    LoRA adapters still wrapped around layers are merged first (``W + (alpha/r) B A``).
    """
    from nl2code.models.lora import lora_layers, merge_and_unload

    if lora_layers(model):
        merge_and_unload(model)
    cfg = model.cfg
    model_type, family = export_target(cfg)
    out_dir = Path(out_dir)
    state = {name: p.detach() for name, p in model.named_parameters()}
    entries = []
    for ln in family.links(cfg):
        for name, tensor in split(ln, state[ln.ours]):
            entries.append((name, lambda t=tensor: t.to(dtype)))
    write_checkpoint(out_dir, entries, max_shard_bytes)
    special = _special_ids(tokenizer)
    config = family.hf_config(cfg, model_type) | {
        "torch_dtype": str(dtype).removeprefix("torch."),
        "dtype": str(dtype).removeprefix("torch."),
        "bos_token_id": special.get("bos"),
        "eos_token_id": special.get("eos"),
        "pad_token_id": special.get("pad"),
    }
    _write_json(out_dir / "config.json", config)
    generation = {
        "bos_token_id": special.get("bos"),
        "eos_token_id": special.get("stop", special.get("eos")),
        "pad_token_id": special.get("pad"),
        "do_sample": False,
    }
    if tokenizer is not None:
        _save_tokenizer(tokenizer, out_dir, cfg.max_seq_len)
    _write_json(out_dir / "generation_config.json", {k: v for k, v in generation.items() if v is not None})
    infill = getattr(tokenizer, "infill_mode", None)
    _write_json(
        out_dir / "nl2code.json",
        {
            "prompt_format": prompt_format,
            "infill": infill,
            "note": "prompt_format nl: the model continues `NL <sep>`; code: plain code completion",
        },
    )
    return model_type


def _special_ids(tokenizer: Any | None) -> dict[str, Any]:
    if tokenizer is None:
        return {}
    meta = getattr(tokenizer, "meta", None)
    if meta is not None:  # a checkpoint's own tokenizer: keep its ids
        stop = list(meta.get("stop_ids") or [meta["eos"]])
        return {
            "bos": meta.get("bos"),
            "eos": meta["eos"],
            "pad": meta.get("pad"),
            "stop": stop if len(stop) > 1 else stop[0],
        }
    return {"bos": tokenizer.eos_id, "eos": tokenizer.eos_id, "pad": tokenizer.pad_id}


def _save_tokenizer(tokenizer: Any, out_dir: Path, max_len: int) -> None:
    tokenizer.save(out_dir)
    if getattr(tokenizer, "meta", None) is None:  # ours: add what AutoTokenizer needs
        tok_config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "eos_token": "<eos>",
            "pad_token": "<pad>",
            "bos_token": "<eos>",
            "model_max_length": max_len,
            "clean_up_tokenization_spaces": False,
        }
        _write_json(out_dir / "tokenizer_config.json", tok_config)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
