"""TF-IDF retrieval of the nearest training utterances, and the retrieval-augmented AR prompt.

:class:`TfIdf` scores documents as scikit-learn's ``TfidfVectorizer`` defaults do; :class:`Retriever`
indexes the utterances of a set of training records and returns the distinct commands of the nearest
ones. With ``objective.retrieval_k: K`` (``causal_lm``) an AR model trains and generates on

    ``cmd_1 \\n cmd_2 \\n ... cmd_K \\n <eom> NL <sep> code <eos>``

where ``cmd_i`` are the commands of the K train utterances nearest to NL (never the row itself:
a training row is left out of its own neighbours; test rows are not in the index at all), nearest
first, only the code after ``<sep>`` scored. See :func:`rag_prefix`. A CodeFusion model
(``objective.retrieval_k`` of ``codefusion``) gets the same commands in its encoder input,
``cmd_1 \\n ... <eom> NL``, within the encoder's length (:func:`rag_context`).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from nl2code.data.records import Record

_WORD = re.compile(r"(?u)\b\w\w+\b")


def words(text: str) -> list[str]:
    """Lower-cased words of two or more word characters (scikit-learn's default token pattern)."""
    return _WORD.findall(text.lower())


class TfIdf:
    """TF-IDF with scikit-learn's ``TfidfVectorizer`` defaults: raw counts, smooth idf
    ``ln((1 + N) / (1 + df)) + 1``, L2-normalised vectors; cosine ranking through an inverted index."""

    def __init__(self, docs: Sequence[str]):
        counts = [Counter(words(d)) for d in docs]
        df = Counter(w for c in counts for w in c)
        self.n = len(docs)
        self.idf = {w: math.log((1 + self.n) / (1 + f)) + 1 for w, f in df.items()}
        postings: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        for i, c in enumerate(counts):
            for w, v in self._vector(c).items():
                postings[w][0].append(i)
                postings[w][1].append(v)
        self.postings = {w: (np.array(ix), np.array(vs)) for w, (ix, vs) in postings.items()}

    def _vector(self, counts: Counter[str]) -> dict[str, float]:
        vec = {w: n * self.idf[w] for w, n in counts.items() if w in self.idf}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {w: v / norm for w, v in vec.items()}

    def scores(self, query: str) -> np.ndarray:
        """(N,) cosine of ``query`` with every document."""
        out = np.zeros(self.n)
        for w, q in self._vector(Counter(words(query))).items():
            ix, vs = self.postings[w]
            np.add.at(out, ix, q * vs)
        return out

    def nearest(self, query: str, scores: np.ndarray | None = None) -> list[int]:
        """Document indices by decreasing cosine (ties: lower index first); only documents sharing a
        word with the query. ``scores``: :meth:`scores` of ``query`` when already computed."""
        scores = self.scores(query) if scores is None else scores
        order = np.lexsort((np.arange(self.n), -scores))
        return [int(i) for i in order if scores[i] > 0]


class Retriever:
    """The commands of the training rows whose utterances are nearest to a query."""

    def __init__(self, records: Sequence[Record]):
        self.nls = [r.nl for r in records]
        self.codes = [r.code.rstrip("\n") for r in records]
        self.index = TfIdf(self.nls)
        self._row_of: dict[tuple[str, str], int] = {}
        for i, key in enumerate(zip(self.nls, self.codes)):
            self._row_of.setdefault(key, i)
        self._cache: dict[tuple[str, int, int], list[tuple[str, float]]] = {}

    def row_of(self, nl: str, code: str) -> int:
        """Index of the (first) row with exactly this utterance and command, or -1."""
        return self._row_of.get((nl, code.rstrip("\n")), -1)

    def neighbours(self, nl: str, k: int, exclude: int = -1) -> list[str]:
        """Up to ``k`` distinct commands of the rows nearest to ``nl``, nearest first, skipping row
        ``exclude`` (a training row's own index: leave-one-out)."""
        return [code for code, _ in self.neighbours_scored(nl, k, exclude)]

    def neighbours_scored(self, nl: str, k: int, exclude: int = -1) -> list[tuple[str, float]]:
        """:meth:`neighbours` with the cosine of each command's (nearest) utterance with ``nl``."""
        key = (nl, k, exclude)
        if key not in self._cache:
            scores = self.index.scores(nl)
            picked: dict[str, float] = {}
            for i in self.index.nearest(nl, scores):
                if i == exclude or self.codes[i] in picked:
                    continue
                picked[self.codes[i]] = float(scores[i])
                if len(picked) == k:
                    break
            self._cache[key] = list(picked.items())
        return self._cache[key]


def rag_prefix(
    neighbour_ids: Sequence[Sequence[int]], newline_ids: Sequence[int], eom_id: int, budget: int
) -> list[int]:
    """``cmd_1 \\n ... cmd_k \\n <eom>`` from tokenized commands, nearest first, keeping only whole
    commands while the prefix fits ``budget`` tokens (``[<eom>]`` alone when none fits; nothing when not even
    ``<eom>`` fits, so a row already ``max_len`` long stays within it)."""
    if budget < 1:
        return []
    out: list[int] = []
    for ids in neighbour_ids:
        piece = [*ids, *newline_ids]
        if len(out) + len(piece) + 1 > budget:
            break
        out += piece
    return [*out, eom_id]


_RETRIEVERS: dict[str, Retriever] = {}


def retriever_for(data_cfg: object) -> Retriever:
    """The :class:`Retriever` over the training records of a ``DataConfig`` (the records a run trains
    on, after its held-out fraction is removed), memoised per config."""
    import json

    from nl2code.config import to_dict
    from nl2code.data.pipeline import load_splits

    key = json.dumps(to_dict(data_cfg), sort_keys=True, default=str)
    if key not in _RETRIEVERS:
        _RETRIEVERS[key] = Retriever(load_splits(data_cfg)[0])
    return _RETRIEVERS[key]


def retrieved_prefix(tok: object, retriever: Retriever, nl: str, k: int, budget: int, exclude: int = -1) -> list[int]:
    """The tokenized ``cmd_1 \\n ... <eom>`` prefix for utterance ``nl`` (see :func:`rag_prefix`)."""
    cmds = retriever.neighbours(nl, k, exclude)
    return rag_prefix([tok.encode(c) for c in cmds], tok.encode("\n"), tok.eom_id, budget)  # type: ignore[attr-defined]


def rag_context(
    tok: object, retriever: Retriever, nl: str, nl_ids: Sequence[int], k: int, length: int, exclude: int = -1
) -> list[int]:
    """``cmd_1 \\n ... <eom>`` + ``nl_ids`` in at most ``length`` tokens: the utterance is kept whole
    and the prefix gets what is left (none when nothing is left). Training rows and prompts at
    inference both go through here, so a model sees one layout."""
    room = length - len(nl_ids)
    if room < 2:  # not even <eom> and one command token
        return list(nl_ids)
    return [*retrieved_prefix(tok, retriever, nl, k, room, exclude), *nl_ids]
