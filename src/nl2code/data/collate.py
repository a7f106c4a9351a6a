"""Turn tokenized examples into batches: right padding, or packing into fixed-length rows.

An :class:`Example` is one tokenized sequence plus a per-token loss mask (True where the token is
a training target). :func:`pad_collate` right-pads a list of examples into a :class:`Batch`;
:func:`pack_examples` concatenates examples (each already ending in EOS) into rows of exactly
``max_len`` tokens, GPT-style, so no compute is spent on padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Example:
    """One tokenized sequence.

    Attributes:
        input_ids: (T,) int64 token ids.
        loss_mask: (T,) bool, True where the token is a target the objective scores.
        extras: other per-example int sequences an objective needs (e.g. a separate NL encoding);
            each is right-padded on its own by :func:`pad_collate`.
    """

    input_ids: np.ndarray
    loss_mask: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.input_ids = np.asarray(self.input_ids, dtype=np.int64)
        self.loss_mask = np.asarray(self.loss_mask, dtype=bool)
        if self.input_ids.ndim != 1 or self.input_ids.shape != self.loss_mask.shape:
            raise ValueError(
                f"input_ids {self.input_ids.shape} and loss_mask {self.loss_mask.shape} "
                "must be 1-D and of equal length"
            )

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class Batch:
    """A padded batch. Padding is always on the right.

    Attributes:
        input_ids: (B, T) int64.
        attention_mask: (B, T) bool, True on real tokens.
        loss_mask: (B, T) bool, True on target tokens (always False on padding).
        extras: name -> (B, T_name) int64, plus ``name + "_mask"`` -> (B, T_name) bool.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def num_tokens(self) -> int:
        """Real (non-pad) tokens in the batch, for throughput accounting."""
        return int(self.attention_mask.sum())

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=non_blocking)

        return Batch(
            input_ids=move(self.input_ids),
            attention_mask=move(self.attention_mask),
            loss_mask=move(self.loss_mask),
            extras={k: move(v) for k, v in self.extras.items()},
        )


def _pad(seqs: Sequence[np.ndarray], value: int | bool, dtype: torch.dtype, multiple: int) -> torch.Tensor:
    longest = max(len(s) for s in seqs)
    width = -(-longest // multiple) * multiple
    out = torch.full((len(seqs), width), value, dtype=dtype)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.from_numpy(np.asarray(s))
    return out


def pad_collate(examples: Sequence[Example], pad_id: int, pad_to_multiple: int = 1) -> Batch:
    """Right-pad ``examples`` to the longest one (rounded up to ``pad_to_multiple``)."""
    if not examples:
        raise ValueError("cannot collate an empty list of examples")
    ids = _pad([e.input_ids for e in examples], pad_id, torch.long, pad_to_multiple)
    keep = _pad([np.ones(len(e), dtype=bool) for e in examples], False, torch.bool, pad_to_multiple)
    loss = _pad([e.loss_mask for e in examples], False, torch.bool, pad_to_multiple)
    extras: dict[str, torch.Tensor] = {}
    names = set(examples[0].extras)
    for e in examples[1:]:
        if set(e.extras) != names:
            raise ValueError(f"examples disagree on extras: {sorted(names)} vs {sorted(e.extras)}")
    for name in sorted(names):
        seqs = [e.extras[name] for e in examples]
        extras[name] = _pad(seqs, pad_id, torch.long, pad_to_multiple)
        extras[name + "_mask"] = _pad(
            [np.ones(len(s), dtype=bool) for s in seqs], False, torch.bool, pad_to_multiple
        )
    return Batch(input_ids=ids, attention_mask=keep, loss_mask=loss, extras=extras)


def pack_examples(examples: Sequence[Example], max_len: int) -> tuple[list[Example], int]:
    """Concatenate ``examples`` in order and cut the stream into rows of exactly ``max_len`` tokens.

    Documents are separated only by the EOS each example already ends with; attention may cross
    document boundaries inside a row (as in GPT-2/CodeGen pre-training). Returns the rows and the
    number of trailing tokens dropped because they did not fill a last row.
    """
    if any(e.extras for e in examples):
        raise ValueError("examples with extras cannot be packed")
    if not examples:
        return [], 0
    ids = np.concatenate([e.input_ids for e in examples])
    mask = np.concatenate([e.loss_mask for e in examples])
    n_rows = len(ids) // max_len
    rows = [
        Example(ids[i * max_len : (i + 1) * max_len], mask[i * max_len : (i + 1) * max_len])
        for i in range(n_rows)
    ]
    return rows, len(ids) - n_rows * max_len
