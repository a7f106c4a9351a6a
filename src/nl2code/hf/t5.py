"""T5 / CodeT5 encoders from a transformers checkpoint folder (``T5ForConditionalGeneration``,
``T5EncoderModel``), for CodeFusion's ``model.encoder_init``. Only the encoder is read; a full
seq2seq checkpoint's decoder tensors are left alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nl2code.hf.llama import UnsupportedCheckpoint
from nl2code.hf.mapping import Link, fill, link
from nl2code.hf.safetensors_io import CheckpointFiles
from nl2code.models.t5_encoder import T5Encoder, T5EncoderConfig


def config_from_hf(config: dict[str, Any], where: str) -> T5EncoderConfig:
    """The encoder's shape from a T5 ``config.json``."""
    if config.get("model_type") != "t5":
        raise UnsupportedCheckpoint(f"{where}: model_type {config.get('model_type')!r}, expected 't5'")
    proj = config.get("feed_forward_proj", "relu")
    proj = {"gated-gelu_new": "gated-gelu"}.get(proj, proj)
    if proj not in ("relu", "gated-gelu"):
        raise UnsupportedCheckpoint(f"{where}: feed_forward_proj {proj!r} (supported: relu, gated-gelu)")
    return T5EncoderConfig(
        vocab_size=int(config["vocab_size"]),
        d_model=int(config["d_model"]),
        d_kv=int(config["d_kv"]),
        num_heads=int(config["num_heads"]),
        d_ff=int(config["d_ff"]),
        num_layers=int(config["num_layers"]),
        feed_forward_proj=proj,
        relative_attention_num_buckets=int(config.get("relative_attention_num_buckets", 32)),
        relative_attention_max_distance=int(config.get("relative_attention_max_distance", 128)),
        layer_norm_epsilon=float(config.get("layer_norm_epsilon", 1e-6)),
    )


def read_config(folder: str | Path) -> T5EncoderConfig:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise UnsupportedCheckpoint(f"{path}: missing (encoder_init must be a T5/CodeT5 checkpoint folder)")
    return config_from_hf(json.loads(path.read_text(encoding="utf-8")), str(path))


def links(cfg: T5EncoderConfig, names: set[str]) -> list[Link]:
    """Our :class:`T5Encoder` parameters <-> HF T5 encoder tensor names."""
    embed = "encoder.embed_tokens.weight" if "encoder.embed_tokens.weight" in names else "shared.weight"
    out = [
        link("embed.weight", embed),
        link("norm.weight", "encoder.final_layer_norm.weight"),
        link("position_bias.weight", "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
    ]
    for i in range(cfg.num_layers):
        hf, us = f"encoder.block.{i}.layer.", f"layers.{i}."
        out += [
            link(us + "attn_norm.weight", hf + "0.layer_norm.weight"),
            link(us + "ff_norm.weight", hf + "1.layer_norm.weight"),
        ]
        out += [link(f"{us}{n}.weight", f"{hf}0.SelfAttention.{n}.weight") for n in "qkvo"]
        ff = hf + "1.DenseReluDense."
        if cfg.feed_forward_proj == "gated-gelu":
            out += [link(us + "wi.weight", ff + "wi_0.weight"), link(us + "wi_1.weight", ff + "wi_1.weight")]
        else:
            out.append(link(us + "wi.weight", ff + "wi.weight"))
        out.append(link(us + "wo.weight", ff + "wo.weight"))
    return out


def load_encoder(encoder: T5Encoder, folder: str | Path) -> None:
    """Fill ``encoder`` with the encoder weights of the T5 checkpoint ``folder`` (shapes must match)."""
    want = read_config(folder)
    if want != encoder.cfg:
        raise UnsupportedCheckpoint(f"{folder}: its encoder is {want}, the model's is {encoder.cfg}")
    with CheckpointFiles(folder) as files:
        params = {name: p.detach() for name, p in encoder.named_parameters()}
        fill(params, links(encoder.cfg, set(files.tensors)), files)
