"""CoNaLa's official BLEU and exact match (CodaLab evaluator ``conala_eval.py``), re-implemented.

Tokenizer (Wang Ling et al. 2016): put spaces around every character that is not ``[A-Za-z0-9_]``,
split camelCase (``aB`` -> ``a B``), collapse whitespace, replace ``"`` and ``'`` by a backtick, split
on spaces. Score: corpus-level BLEU-4 (the tensorflow/nmt ``compute_bleu``) with one reference per
item and **no smoothing**: clipped n-gram matches and possible n-grams are summed over the corpus,
``p_n = matches_n / possible_n`` (0 when nothing is possible), geometric mean of ``p_1..p_4`` (0 as
soon as one ``p_n`` is 0), brevity penalty ``exp(1 - r/c)`` when the candidate corpus is not longer
than the references. CoNaLa reports it x100; :func:`conala_bleu` does too.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BleuResult", "compute_bleu", "conala_bleu", "conala_exact_match", "tokenize_for_bleu_eval"]


def tokenize_for_bleu_eval(code: str) -> list[str]:
    """CoNaLa's BLEU tokenizer."""
    code = re.sub(r"([^A-Za-z0-9_])", r" \1 ", code)
    code = re.sub(r"([a-z])([A-Z])", r"\1 \2", code)
    code = re.sub(r"\s+", " ", code)
    code = code.replace('"', "`").replace("'", "`")
    return [t for t in code.split(" ") if t]


def _ngrams(tokens: Sequence[str], max_order: int) -> Counter:
    counts: Counter = Counter()
    for n in range(1, max_order + 1):
        for i in range(len(tokens) - n + 1):
            counts[tuple(tokens[i : i + n])] += 1
    return counts


@dataclass(frozen=True)
class BleuResult:
    bleu: float  # in [0, 1]
    precisions: tuple[float, ...]
    brevity_penalty: float
    ratio: float  # candidate length / reference length
    translation_length: int
    reference_length: int


def compute_bleu(
    references: Sequence[Sequence[Sequence[str]]],
    translations: Sequence[Sequence[str]],
    max_order: int = 4,
    smooth: bool = False,
) -> BleuResult:
    """Corpus BLEU over token lists; ``references[i]`` holds the references of ``translations[i]``."""
    if len(references) != len(translations):
        raise ValueError(f"{len(references)} reference sets for {len(translations)} translations")
    matches = [0] * max_order
    possible = [0] * max_order
    ref_len = trans_len = 0
    for refs, trans in zip(references, translations, strict=True):
        ref_len += min((len(r) for r in refs), default=0)
        trans_len += len(trans)
        merged: Counter = Counter()
        for r in refs:
            merged |= _ngrams(r, max_order)  # clip by the max count in any reference
        overlap = _ngrams(trans, max_order) & merged
        for ngram, count in overlap.items():
            matches[len(ngram) - 1] += count
        for n in range(1, max_order + 1):
            possible[n - 1] += max(0, len(trans) - n + 1)
    if smooth:
        precisions = [(m + 1.0) / (p + 1.0) for m, p in zip(matches, possible, strict=True)]
    else:
        precisions = [m / p if p > 0 else 0.0 for m, p in zip(matches, possible, strict=True)]
    geo_mean = math.exp(sum(math.log(p) for p in precisions) / max_order) if min(precisions) > 0 else 0.0
    ratio = trans_len / ref_len if ref_len else 0.0
    # an empty candidate corpus scores 0 instead of dividing by zero
    bp = 1.0 if ratio > 1.0 else (math.exp(1 - 1.0 / ratio) if ratio > 0 else 0.0)
    return BleuResult(geo_mean * bp, tuple(precisions), bp, ratio, trans_len, ref_len)


def conala_bleu(references: Sequence[str], predictions: Sequence[str]) -> float:
    """CoNaLa corpus BLEU-4 x100 of ``predictions`` against one reference each."""
    refs = [[tokenize_for_bleu_eval(r)] for r in references]
    hyps = [tokenize_for_bleu_eval(p) for p in predictions]
    return 100.0 * compute_bleu(refs, hyps, smooth=False).bleu


def conala_exact_match(prediction: str, reference: str) -> bool:
    """CoNaLa exact match: identical token lists under the BLEU tokenizer."""
    return tokenize_for_bleu_eval(prediction) == tokenize_for_bleu_eval(reference)
