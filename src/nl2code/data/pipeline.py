"""From data-source records to a deterministic, resumable, sharded stream of training batches.

``load_splits`` reads a source and separates train/eval records; a *format* turns one record into
one token sequence (:class:`~nl2code.data.collate.Example`); :class:`BatchIterator` yields this
rank's share of every global batch, reshuffling each epoch from ``(seed, epoch)`` alone, so its
whole position is two integers (:meth:`BatchIterator.state_dict`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from nl2code.data.collate import Batch, Example, pack_examples, pad_collate
from nl2code.data.config import DataConfig
from nl2code.data.records import DataError, Record
from nl2code.data.tokenizer import CodeTokenizer

# -- formats: one record -> one token sequence ------------------------------------------------------


def format_nl_code(rec: Record, tok: CodeTokenizer, cfg: DataConfig) -> Example:
    """``NL <sep> code <eos>``; the NL and ``<sep>`` are targets only when ``loss_on == "all"``."""
    nl, code = tok.encode(rec.nl), tok.encode(rec.code)
    ids = [*nl, tok.sep_id, *code, tok.eos_id]
    mask = [cfg.loss_on == "all"] * (len(nl) + 1) + [True] * (len(code) + 1)
    return Example(np.array(ids), np.array(mask))


def format_code(rec: Record, tok: CodeTokenizer, cfg: DataConfig) -> Example:
    """``code <eos>``, every token a target (for code-only corpora and pre-training)."""
    ids = [*tok.encode(rec.code), tok.eos_id]
    return Example(np.array(ids), np.ones(len(ids), dtype=bool))


def format_code_nl(rec: Record, tok: CodeTokenizer, cfg: DataConfig) -> Example:
    """``code <eos>`` with the utterance (cut to ``max_len``) in ``extras["nl"]`` (CodeFusion fine-tuning)."""
    ex = format_code(rec, tok, cfg)
    nl = tok.encode(rec.nl)[: cfg.max_len] or [tok.pad_id]  # an empty utterance still needs one position
    ex.extras["nl"] = np.array(nl, dtype=np.int64)
    return ex


def format_code_cpd(rec: Record, tok: CodeTokenizer, cfg: DataConfig) -> Example:
    """``code <eos>`` with per-token identifier/keyword occurrence numbers in ``extras["cpd_groups"]``
    (CodeFusion's CPD pre-training; see :mod:`nl2code.data.cpd`)."""
    from nl2code.data.cpd import LANGUAGES, cpd_group_ids

    if rec.language not in LANGUAGES:  # CPD needs a lexer; say so instead of failing deep inside
        where = rec.extras.get("line", rec.task_id)
        raise DataError(cfg.path or rec.task_id, where, "language",
                        f"data.format code_cpd needs one of {', '.join(LANGUAGES)}, got {rec.language!r} "
                        "(set data.options.language)")
    ex = format_code(rec, tok, cfg)
    groups = cpd_group_ids(tok, ex.input_ids.tolist(), rec.language, tok.special_ids)
    ex.extras["cpd_groups"] = np.array(groups, dtype=np.int64)
    return ex


FORMATS: dict[str, Callable[[Record, CodeTokenizer, DataConfig], Example]] = {
    "nl_code": format_nl_code,
    "code": format_code,
    "code_nl": format_code_nl,
    "code_cpd": format_code_cpd,
}


def preview_prompt(rec: Record, tok: CodeTokenizer, cfg: DataConfig) -> list[int] | None:
    """The prompt a sample preview continues: ``NL <sep>``, or the first code line for ``code``."""
    if cfg.format == "nl_code":
        return [*tok.encode(rec.nl), tok.sep_id] if rec.nl else None
    if cfg.format == "code_nl":  # CodeFusion: the utterance alone conditions the sample
        return tok.encode(rec.nl)[: cfg.max_len] or None
    if cfg.format == "code_cpd":  # unconditional preview (the CPD objective ignores the prompt)
        return [tok.eos_id]
    first = rec.code.split("\n", 1)[0]
    return tok.encode(first + "\n") if first.strip() else None


# -- records --------------------------------------------------------------------------------------


def _held_out(task_id: str, fraction: float) -> bool:
    """Stable train/eval assignment from the task id alone (independent of record order)."""
    h = int.from_bytes(hashlib.blake2b(task_id.encode("utf-8"), digest_size=8).digest(), "big")
    return h / 2**64 < fraction


def load_splits(cfg: DataConfig) -> tuple[list[Record], list[Record], list[str]]:
    """(train records, eval records, notes) for ``cfg``; an empty training set is a DataError."""
    from nl2code.data.sources import load_source

    where = cfg.path or f"<{cfg.source}>"
    result = load_source(cfg.source, cfg.path, **cfg.options)
    notes = list(result.notes)
    records = result.records
    train = records if cfg.split is None else [r for r in records if r.split == cfg.split]
    if not train:
        have = result.split_counts()
        hint = "; set data.split to one of these, or null for all records"
        raise DataError(where, None, "split", f"no records in split {cfg.split!r} (have {have}{hint})")
    if cfg.eval_split is not None:
        evals = [r for r in records if r.split == cfg.eval_split]
        if not evals:
            have = result.split_counts()
            hint = "; set data.eval_split to one of these, or null to hold out data.eval_fraction"
            problem = f"no records in split {cfg.eval_split!r} (have {have}{hint})"
            raise DataError(where, None, "eval_split", problem)
    elif cfg.eval_fraction > 0:
        evals = [r for r in train if _held_out(r.task_id, cfg.eval_fraction)]
        train = [r for r in train if not _held_out(r.task_id, cfg.eval_fraction)]
        notes.append(f"held out {len(evals)} of {len(evals) + len(train)} records for evaluation")
    else:
        evals = []
    if cfg.max_examples is not None and len(train) > cfg.max_examples:
        notes.append(f"using the first {cfg.max_examples} of {len(train)} training records")
        train = train[: cfg.max_examples]
    if not train:
        raise DataError(where, None, None, "no training records left after holding out evaluation records")
    return train, evals, notes


def tokenize(
    records: Sequence[Record], tok: CodeTokenizer, cfg: DataConfig
) -> tuple[list[Example], dict[str, int]]:
    """Encode ``records`` with ``cfg.format``; overlong ones are cut or dropped and counted."""
    fmt = FORMATS[cfg.format]
    out: list[Example] = []
    counts = {"examples": 0, "truncated": 0, "dropped_overlong": 0, "dropped_no_target": 0}
    for rec in records:
        ex = fmt(rec, tok, cfg)
        if len(ex) > cfg.max_len and not cfg.packing:
            if cfg.overlong == "drop":
                counts["dropped_overlong"] += 1
                continue
            counts["truncated"] += 1
            # extras aligned with the tokens (CPD groups) are cut with them; others (the NL) are kept
            extras = {k: v[: cfg.max_len] if len(v) == len(ex) else v for k, v in ex.extras.items()}
            ex = Example(ex.input_ids[: cfg.max_len], ex.loss_mask[: cfg.max_len], extras)
        if not ex.loss_mask[1:].any():  # nothing to predict (e.g. the NL alone fills max_len)
            counts["dropped_no_target"] += 1
            continue
        out.append(ex)
    counts["examples"] = len(out)
    return out, counts


# -- batches --------------------------------------------------------------------------------------


class BatchIterator:
    """Endless stream of this rank's share of each global batch, deterministic under ``seed``.

    Each epoch visits the examples in ``permutation(seed, epoch)`` order (or in order when
    ``shuffle`` is off); with ``pack_len`` set, the ordered examples are packed into rows of
    exactly that many tokens. Global batch ``i`` is rows ``[i*B, (i+1)*B)``; rank ``r`` of ``W``
    takes the contiguous slice ``[r*B/W, (r+1)*B/W)`` of it, so W ranks together see exactly the
    examples one process would. Incomplete trailing batches are skipped so every rank always
    gets the same number of examples.

    ``transform(row, rng)``, when given, rewrites each row before collation (span corruption,
    FIM...) with ``rng = default_rng([seed, epoch, global row index])``: fresh every epoch, the
    same on any number of ranks, and restored by the two-integer position on resume.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        *,
        batch_size: int,
        pad_id: int,
        seed: int,
        shuffle: bool = True,
        pack_len: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        transform: Callable[[Example, np.random.Generator], Example] | None = None,
    ):
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by {world_size} data-parallel ranks")
        self.examples = list(examples)
        self.batch_size, self.pad_id, self.seed = batch_size, pad_id, seed
        self.shuffle, self.pack_len = shuffle, pack_len
        self.rank, self.world_size = rank, world_size
        self.transform = transform
        self.epoch, self.index = 0, 0
        self._rows: list[Example] | None = None
        per_epoch = len(self._epoch_rows(0)) // batch_size
        if per_epoch == 0:
            unit = "packed rows" if pack_len else "examples"
            raise ValueError(f"only {len(self._epoch_rows(0))} {unit} for a batch_size of {batch_size}")
        self.batches_per_epoch = per_epoch

    def _epoch_rows(self, epoch: int) -> list[Example]:
        n = len(self.examples)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        ordered = [self.examples[i] for i in order]
        if self.pack_len is None:
            return ordered
        return pack_examples(ordered, self.pack_len)[0]

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        if self.index >= self.batches_per_epoch:
            self.epoch, self.index, self._rows = self.epoch + 1, 0, None
        if self._rows is None:
            self._rows = self._epoch_rows(self.epoch)
        start = self.index * self.batch_size
        share = self.batch_size // self.world_size
        first = start + self.rank * share
        local = self._rows[first : first + share]
        if self.transform is not None:
            local = [
                self.transform(row, np.random.default_rng([self.seed, self.epoch, first + j]))
                for j, row in enumerate(local)
            ]
        self.index += 1
        return pad_collate(local, self.pad_id)

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.epoch,
            "index": self.index,
            "seed": self.seed,
            "num_examples": len(self.examples),
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        mine = self.state_dict()
        for key in ("seed", "num_examples", "batch_size"):
            if int(state[key]) != mine[key]:
                raise ValueError(
                    f"the checkpoint's data position was saved with {key}={int(state[key])} but this run "
                    f"has {key}={mine[key]}: the data or config changed since the checkpoint"
                )
        self.epoch, self.index, self._rows = int(state["epoch"]), int(state["index"]), None


def eval_batches(
    examples: Sequence[Example],
    *,
    batch_size: int,
    pad_id: int,
    limit: int,
    pack_len: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[Batch]:
    """This rank's share of the first ``limit`` global eval batches, always in the same order."""
    rows = list(examples) if pack_len is None else pack_examples(list(examples), pack_len)[0]
    for i in range(min(limit, -(-len(rows) // batch_size))):
        chunk = rows[i * batch_size : (i + 1) * batch_size]
        local = np.array_split(np.arange(len(chunk)), world_size)[rank]
        if len(local):
            yield pad_collate([chunk[j] for j in local], pad_id)


@dataclass
class PreviewSet:
    """Prompts for the sample preview, with the reference text they came from."""

    prompts: list[list[int]]
    references: list[str]


def preview_set(records: Sequence[Record], tok: CodeTokenizer, cfg: DataConfig, count: int) -> PreviewSet:
    prompts, refs = [], []
    for rec in records:
        if len(prompts) >= count:
            break
        p = preview_prompt(rec, tok, cfg)
        if p is not None and len(p) < cfg.max_len:
            prompts.append(p)
            refs.append(rec.code)
    return PreviewSet(prompts, refs)
