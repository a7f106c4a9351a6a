"""Training-time rewrites of token sequences for infilling: CodeGen2 span corruption and FIM.

Pure functions over token ids; randomness comes from the ``np.random.Generator`` passed in.

* Span corruption (CodeGen2, moe-codegen2.md §6.2): K non-overlapping spans of one file are
  replaced by sentinels and moved behind the file, each closed by ``<eom>``::

      body_with_<mask_1>..<mask_K> <eos> <sep> <mask_1> span_1 <eom> ... <mask_K> span_K <eom>

  The inference prompt ``prefix <mask_1> suffix <eos> <sep> <mask_1>`` is the K = 1 case cut
  after the second ``<mask_1>``. :func:`span_reconstruct` inverts it exactly.
* Fill-in-the-middle (Bavarian et al. 2022, §7): the file is decoded, cut at two uniform
  *character* positions, and the pieces are re-tokenised separately (so token boundaries at the
  cuts look like inference, where prefix and suffix are tokenised on their own)::

      PSM: <fim_prefix> prefix <fim_suffix> suffix <fim_middle> middle <eos>
      SPM: <fim_prefix> <fim_suffix> suffix <fim_middle> prefix middle <eos>

  :func:`fim_inverse` recovers the text exactly.

:class:`InfillMixture` applies one of {span corruption, FIM, unchanged} to every file of a training
row, as the ``codegen2_mixture`` objective asks the batch stream to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from nl2code.data.collate import Example


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the control tokens the rewrites emit (see ``nl2code.data.tokenizer``)."""

    eos: int
    sep: int
    eom: int
    fim_prefix: int
    fim_suffix: int
    fim_middle: int
    sentinels: tuple[int, ...]  # <mask_1>, <mask_2>, ...

    @classmethod
    def from_tokenizer(cls, tok: object) -> SpecialIds:
        """From a :class:`~nl2code.data.tokenizer.CodeTokenizer`."""
        return cls(
            eos=tok.eos_id,
            sep=tok.sep_id,
            eom=tok.eom_id,
            fim_prefix=tok.fim_prefix_id,
            fim_suffix=tok.fim_suffix_id,
            fim_middle=tok.fim_middle_id,
            sentinels=tuple(tok.sentinel_id(i) for i in range(1, tok.num_sentinels + 1)),
        )


@dataclass
class Noised:
    """A rewritten file.

    Attributes:
        ids: the new token sequence (ends with ``<eos>`` for FIM, ``<eom>`` for span corruption).
        answer: bool per token: True on the part a model generates at inference time (the
            sentinel section after ``<sep>``, or the FIM middle and its ``<eos>``).
        mode: ``span``, ``psm`` or ``spm``.
    """

    ids: list[int]
    answer: list[bool]
    mode: str


# -- span corruption ------------------------------------------------------------------------------


def _composition(total: int, parts: int, rng: np.random.Generator, min_part: int) -> list[int]:
    """``parts`` integers >= ``min_part`` summing to ``total``, uniformly over such compositions."""
    free = total - parts * min_part
    if free < 0:
        raise ValueError(f"cannot split {total} into {parts} parts of at least {min_part}")
    # stars and bars: choose parts-1 bar positions among free + parts - 1 slots
    bars = np.sort(rng.choice(free + parts - 1, size=parts - 1, replace=False)) if parts > 1 else np.array([])
    edges = np.concatenate([[-1], bars, [free + parts - 1]])
    return [int(d) - 1 + min_part for d in np.diff(edges)]


def random_spans(n: int, n_masked: int, n_spans: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``n_spans`` sorted, non-empty ``[start, end)`` spans covering ``n_masked`` of ``n`` positions.

    Spans never touch (at least one unmasked token between two), so each sentinel stands for
    exactly one maximal masked run.
    """
    if not 1 <= n_spans <= n_masked or n_masked + n_spans - 1 > n:
        raise ValueError(f"cannot place {n_spans} separate spans of {n_masked} tokens in {n}")
    lengths = _composition(n_masked, n_spans, rng, 1)
    # n_spans + 1 gaps: the outer two may be empty, the inner ones hold >= 1 token
    gaps = _composition(n - n_masked - (n_spans - 1), n_spans + 1, rng, 0)
    gaps = [g + (1 if 0 < i < n_spans else 0) for i, g in enumerate(gaps)]
    spans, pos = [], 0
    for gap, length in zip(gaps, lengths):
        pos += gap
        spans.append((pos, pos + length))
        pos += length
    return spans


def span_corruption(
    ids: Sequence[int],
    rng: np.random.Generator,
    special: SpecialIds,
    *,
    mask_ratio: tuple[float, float] = (0.05, 0.5),
    mean_span_len: float = 8.0,
    max_spans: int = 16,
) -> Noised:
    """CodeGen2 span corruption of one file ``ids`` (no ``<eos>``; at least 2 tokens).

    A mask ratio r ~ U(mask_ratio) is drawn per file; ``m = max(1, round(r * n))`` tokens are
    masked in ``K = clip(round(m / mean_span_len), 1, max_spans)`` spans (fewer if the file is too
    short to keep them apart).
    """
    n = len(ids)
    if n < 2:
        raise ValueError("span corruption needs a file of at least 2 tokens")
    max_spans = min(max_spans, len(special.sentinels))
    lo, hi = mask_ratio
    m = min(n - 1, max(1, round(rng.uniform(lo, hi) * n)))  # leave at least one token visible
    k = int(np.clip(round(m / mean_span_len), 1, max_spans))
    k = max(1, min(k, m, n - m + 1))  # spans need m >= k and k - 1 separators
    spans = random_spans(n, m, k, rng)
    body: list[int] = []
    tail: list[int] = [special.eos, special.sep]
    pos = 0
    for j, (a, b) in enumerate(spans):
        body += [*ids[pos:a], special.sentinels[j]]
        tail += [special.sentinels[j], *ids[a:b], special.eom]
        pos = b
    body += ids[pos:]
    return Noised(body + tail, [False] * (len(body) + 2) + [True] * (len(tail) - 2), "span")


def span_reconstruct(noised: Sequence[int], special: SpecialIds) -> list[int]:
    """The original file of a :func:`span_corruption` output (exact inverse)."""
    noised = list(noised)
    try:
        cut = noised.index(special.eos)
    except ValueError:
        raise ValueError("not a span-corrupted sequence: no <eos>") from None
    body, tail = noised[:cut], noised[cut + 1 :]
    if not tail or tail[0] != special.sep:
        raise ValueError("not a span-corrupted sequence: <eos> is not followed by <sep>")
    spans: dict[int, list[int]] = {}
    i = 1
    while i < len(tail):
        sentinel = tail[i]
        end = tail.index(special.eom, i + 1)
        spans[sentinel] = tail[i + 1 : end]
        i = end + 1
    out: list[int] = []
    for t in body:
        out += spans.get(t, [t])
    return out


# -- fill in the middle ---------------------------------------------------------------------------


def fim_transform(
    ids: Sequence[int],
    rng: np.random.Generator,
    special: SpecialIds,
    encode: Callable[[str], list[int]],
    decode: Callable[[Sequence[int]], str],
    *,
    spm_rate: float = 0.5,
) -> Noised | None:
    """FIM rewrite of one file ``ids`` (no ``<eos>``), PSM or (with prob. ``spm_rate``) SPM.

    Returns None when ``ids`` is not the tokenisation of its own decoding (e.g. a row cut inside a
    multi-byte character): re-tokenising its pieces would then change the text.
    """
    text = decode(ids)
    if list(encode(text)) != list(ids):
        return None
    a, b = sorted(int(x) for x in rng.integers(0, len(text) + 1, size=2))
    prefix, middle, suffix = encode(text[:a]), encode(text[a:b]), encode(text[b:])
    if rng.random() < spm_rate:
        head = [special.fim_prefix, special.fim_suffix, *suffix, special.fim_middle, *prefix]
        mode = "spm"
    else:
        head = [special.fim_prefix, *prefix, special.fim_suffix, *suffix, special.fim_middle]
        mode = "psm"
    answer = [*middle, special.eos]
    return Noised(head + answer, [False] * len(head) + [True] * len(answer), mode)


def fim_inverse(noised: Sequence[int], special: SpecialIds, decode: Callable[[Sequence[int]], str]) -> str:
    """The original text of a :func:`fim_transform` output (exact inverse)."""
    seq = list(noised)
    if seq[-1:] == [special.eos]:
        seq = seq[:-1]
    if seq[:1] != [special.fim_prefix]:
        raise ValueError("not a FIM sequence: it does not start with <fim_prefix>")
    mid = seq.index(special.fim_middle)
    if seq[1] == special.fim_suffix:  # SPM: suffix, then prefix + middle contiguous
        suffix = seq[2:mid]
        return decode(seq[mid + 1 :]) + decode(suffix)
    suf = seq.index(special.fim_suffix)
    return decode(seq[1:suf]) + decode(seq[mid + 1 :]) + decode(seq[suf + 1 : mid])


# -- the per-row mixture ----------------------------------------------------------------------------


@dataclass(frozen=True)
class InfillMixture:
    """Rewrites every file of a training row: span corruption with probability ``span_rate``,
    else FIM with probability ``fim_rate``, else unchanged (plain causal LM).

    A row may hold several documents (packing); each ends with ``<eos>`` and is rewritten on its
    own, so spans never cross a file boundary. A document missing its ``<eos>`` (cut by packing)
    and files shorter than 2 tokens stay unchanged. With ``protect_prefix`` (the ``nl_code``
    format) the tokens up to the first ``<sep>`` of a document (the NL) stay in front, untouched,
    and only the code after them is rewritten. Rows are cut to ``max_len`` afterwards.

    Loss: rewritten files are targets everywhere (``loss_on="all"``, CodeGen2) or only on their
    answer part (``loss_on="answer"``); untouched tokens keep their loss mask.
    """

    special: SpecialIds
    encode: Callable[[str], list[int]]
    decode: Callable[[Sequence[int]], str]
    max_len: int
    span_rate: float = 0.5
    fim_rate: float = 0.5
    spm_rate: float = 0.5
    mask_ratio: tuple[float, float] = (0.05, 0.5)
    mean_span_len: float = 8.0
    max_spans: int = 16
    protect_prefix: bool = False
    loss_on: Literal["all", "answer"] = "all"

    def rewrite_file(self, ids: list[int], rng: np.random.Generator) -> Noised | None:
        """One file's rewrite, or None to keep it unchanged."""
        if len(ids) < 2:
            return None
        if rng.random() < self.span_rate:
            return span_corruption(ids, rng, self.special, mask_ratio=self.mask_ratio,
                                   mean_span_len=self.mean_span_len, max_spans=self.max_spans)
        if rng.random() < self.fim_rate:
            return fim_transform(ids, rng, self.special, self.encode, self.decode, spm_rate=self.spm_rate)
        return None

    def __call__(self, example: Example, rng: np.random.Generator) -> Example:
        ids, mask = example.input_ids.tolist(), example.loss_mask.tolist()
        out_ids: list[int] = []
        out_mask: list[bool] = []
        start = 0
        while start < len(ids):
            try:
                end = ids.index(self.special.eos, start) + 1
            except ValueError:  # trailing fragment without <eos>: keep as is
                end = len(ids)
            doc, doc_mask = ids[start:end], mask[start:end]
            start = end
            keep = 0
            if self.protect_prefix and self.special.sep in doc:
                keep = doc.index(self.special.sep) + 1
            noised = None
            if doc[-1] == self.special.eos:
                noised = self.rewrite_file(doc[keep:-1], rng)
            if noised is None:
                out_ids += doc
                out_mask += doc_mask
                continue
            out_ids += doc[:keep] + noised.ids
            target = noised.answer if self.loss_on == "answer" else [True] * len(noised.ids)
            out_mask += doc_mask[:keep] + target
        return Example(np.array(out_ids[: self.max_len]), np.array(out_mask[: self.max_len]))
