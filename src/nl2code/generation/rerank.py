"""Reranking candidate programs: retrieve-then-rerank, valid first, distinct results, minimum Bayes risk.

Retrieve-then-rerank (issue #18; beyond the paper and its anchors: report it apart):

The candidates for an utterance are the distinct programs of the ``k`` training rows nearest to it by
TF-IDF (:class:`nl2code.data.retrieval.Retriever`, the retrieval baseline's index) plus, optionally,
the model's own beams. Each is scored by

    score = mean token log-probability of the program (and its end) after the prompt
            + weight * TF-IDF cosine of the utterance with the program's training utterance

(cosine 0 for a program only the model proposed). ``weight`` = 0 ranks by the model alone; a large
weight gives back the retrieval order. It is chosen on held-out training pairs
(:func:`choose_weight`), never on the test rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import torch

from nl2code.data.retrieval import Retriever
from nl2code.generation.autoregressive import ARGenerator

WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 1e3)  # the grid choose_weight searches (1e3: the retrieval order)


@dataclass(frozen=True)
class Scored:
    """One candidate program with the two terms of its score."""

    text: str
    logprob: float  # mean per token, the end token included
    similarity: float  # TF-IDF cosine of its training utterance with the query (0: proposed by the model)

    def score(self, weight: float) -> float:
        return self.logprob + weight * self.similarity


@torch.no_grad()
def completion_logprobs(gen: ARGenerator, prompt: str, completions: Sequence[str], batch_size: int = 32) -> list[float]:
    """Mean log-probability per token of each completion, its end token included, after ``prompt``
    encoded as :meth:`ARGenerator.generate` encodes it. Sequences are right-padded: a causal model's
    positions never see the padding after them."""
    context = gen.encode_prompt(prompt)
    end = gen.stop_ids[0]
    bodies = [[*gen.tok.encode(c), end] for c in completions]
    limit = gen.model.cfg.max_seq_len
    device = next(gen.model.parameters()).device
    out: list[float] = []
    for b in range(0, len(bodies), batch_size):
        chunk = [[*context, *body][-limit:] for body in bodies[b : b + batch_size]]
        width = max(map(len, chunk))
        x = torch.full((len(chunk), width), gen.tok.pad_id, dtype=torch.long, device=device)
        for i, ids in enumerate(chunk):
            x[i, : len(ids)] = torch.tensor(ids, device=device)
        logp = torch.log_softmax(gen.model(x).logits.float(), dim=-1)
        for i, (ids, body) in enumerate(zip(chunk, bodies[b : b + batch_size], strict=True)):
            n = min(len(body), len(ids) - 1)  # tokens of the body that have context
            pos = torch.arange(len(ids) - n, len(ids), device=device)
            out.append(float(logp[i, pos - 1, x[i, pos]].mean()))
    return out


def candidates(
    gen: ARGenerator, retriever: Retriever, nl: str, k: int, proposed: Sequence[str] = (), batch_size: int = 32
) -> list[Scored]:
    """The ``k`` retrieved programs and the ``proposed`` ones (deduplicated), each scored by the model."""
    sims = dict(retriever.neighbours_scored(nl, k))
    texts = list(sims) + [p for p in dict.fromkeys(proposed) if p not in sims and p.strip()]
    logps = completion_logprobs(gen, nl, texts, batch_size)
    return [Scored(t, lp, sims.get(t, 0.0)) for t, lp in zip(texts, logps, strict=True)]


def ranked(scored: Sequence[Scored], weight: float) -> list[str]:
    """Programs best first (ties keep the candidates' order: retrieved ones nearest first)."""
    order = sorted(range(len(scored)), key=lambda i: -scored[i].score(weight))
    return [scored[i].text for i in order]


def choose_weight(
    pools: dict[str, list[Scored]],
    metric: Callable[[dict[str, list[str]]], float],
    weights: Sequence[float] = WEIGHTS,
) -> tuple[float, dict[float, float]]:
    """The weight of ``weights`` whose rankings of the held-out ``pools`` score best by ``metric``
    (ties: the smaller weight), and every weight's value."""
    values = {w: metric({tid: ranked(pool, w) for tid, pool in pools.items()}) for w in weights}
    best = max(weights, key=lambda w: (values[w], -w))
    return best, values


def valid_first(candidates: Sequence[str], valid: Callable[[str], bool]) -> list[str]:
    """``candidates`` with those ``valid`` accepts first, each part in its original order: execution-guided
    decoding (Wang et al. 2018) drops programs that do not run; reordering keeps them as the last resort."""
    return sorted(candidates, key=lambda c: not valid(c))  # stable: the order within each part is kept


def execution_distinct(candidates: Sequence[str], result: Callable[[str], Hashable | None]) -> list[str]:
    """``candidates`` with behavioural duplicates moved back: the first program of each distinct ``result``
    (its output on the request's own input), in the original order, then the programs whose output an
    earlier one already gave, then those without a result (``None``: they did not run). Only the order
    changes; with a pool larger than k, the top k hold k different behaviours where the pool has them.
    Not a vote for the largest cluster (MBR-exec, Shi et al. 2022; :func:`execution_utility`): on CF's small tables
    many wrong rules agree, e.g. by highlighting nothing, so among retrieved rules the most common behaviour is a
    poor first choice (TF-IDF top-1 46.1 -> 37.6, benchmarks/results/cf_mbr20.md)."""
    outputs = [result(c) for c in candidates]
    seen: set[Hashable] = set()
    heads, dups, failed = [], [], []
    for cand, out in zip(candidates, outputs, strict=True):
        if out is None:
            failed.append(cand)
        elif out in seen:
            dups.append(cand)
        else:
            seen.add(out)
            heads.append(cand)
    return heads + dups + failed


def execution_utility(result: Callable[[str], Hashable | None]) -> Callable[[str, str], float]:
    """The MBR utility of execution (MBR-exec, Shi et al. 2022): 1 when two programs give the same ``result`` on
    the request's own input, else 0 (also when either does not run: ``None``). Ranked by it, the first program
    is one of the behaviour the evidence gives most often, the Bayes decision for an execution-match metric
    (over 30 CodeFusion draws on CF rules: top-1 48.9 -> 51.1, benchmarks/results/cf_mbr20.md). Each program runs
    once however many pairs ask about it."""
    memo: dict[str, Hashable | None] = {}

    def out(program: str) -> Hashable | None:
        if program not in memo:
            memo[program] = result(program)
        return memo[program]

    def utility(candidate: str, reference: str) -> float:
        mine = out(candidate)
        return float(mine is not None and mine == out(reference))

    return utility


def mbr(
    candidates: Sequence[str],
    utility: Callable[[str, str], float],
    evidence: Sequence[str] | Mapping[str, float] | None = None,
    k: int = 1,
) -> list[str]:
    """Minimum Bayes risk ranking (Kumar & Byrne 2004; for sampled text Eikema & Aziz 2020): the distinct
    non-empty ``candidates``, best first by their summed ``utility(candidate, reference)`` over ``evidence``
    (default: the candidates themselves, duplicates included, so a program sampled often weighs more). With
    samples from the model as evidence this picks the program the model's distribution agrees with most
    under the metric, instead of its single most likely sequence. ``evidence`` may map each reference to its
    weight (:func:`mixture_evidence`). Ties keep the first-seen order.

    ``k > 1``: the first ``k`` are chosen greedily to maximise the summed *best* utility among them, the Bayes
    decision for a best-of-k metric such as CMS@k (the first is the same; each next one adds the most where the
    chosen ones agree least with the evidence; greedy is within 1 - 1/e of the best set for this submodular
    objective, Nemhauser et al. 1978); the rest follow in the plain order."""
    pool = candidates if evidence is None else evidence
    refs = dict(pool) if isinstance(pool, Mapping) else Counter(pool)  # a repeated sample: scored once, weighted
    weights = list(refs.values())
    uniq = list(dict.fromkeys(c for c in candidates if c.strip()))
    table = {c: [utility(c, r) for r in refs] for c in uniq}
    order = sorted(uniq, key=lambda c: -sum(w * u for w, u in zip(weights, table[c], strict=True)))  # stable
    chosen: list[str] = []
    best = [0.0] * len(weights)  # per reference, the best utility among the chosen
    for _ in range(min(k, len(order)) if k > 1 else 0):
        rest = [c for c in order if c not in chosen]
        pick = max(rest, key=lambda c: sum(w * max(b, u) for w, b, u in zip(weights, best, table[c], strict=True)))
        chosen.append(pick)  # max keeps the first of equals: ties follow the plain order
        best = [max(b, u) for b, u in zip(best, table[pick], strict=True)]
    return chosen + [c for c in order if c not in chosen]


def mixture_evidence(samples: Sequence[str], retrieved: Sequence[str], share: float) -> dict[str, float]:
    """MBR evidence weights for a mixture of two guesses at the program: the model's ``samples`` with mass
    ``1 - share`` and the ``retrieved`` programs (e.g. the commands of the nearest train requests) with mass
    ``share``, each part uniform over its items. Ranked under it, a retrieved program wins where the samples
    support it and a sampled one where the neighbours do; ``share`` 0 is plain MBR."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    weights: Counter[str] = Counter()
    for part, mass in ((samples, 1.0 - share), (retrieved, share)):
        for text in part:
            weights[text] += mass / len(part)
    return {t: w for t, w in weights.items() if w > 0}


MBR_LANGUAGES = ("bash", "python")


def mbr_utility(language: str) -> Callable[[str, str], float]:
    """The utility (candidate, reference) -> [0, 1] :func:`mbr` ranks a language's programs by: ``bash``:
    NL2Bash's command match score (a cosine of bags of utilities and typed flags, so partial agreement
    counts); ``python``: sentence BLEU-4 under CoNaLa's tokenizer, add-one smoothed (Lin & Och 2004)."""
    if language == "bash":
        from nl2code.eval.metrics.cms import cms

        return cms
    if language == "python":
        from functools import lru_cache

        from nl2code.eval.metrics.bleu import compute_bleu, tokenize_for_bleu_eval

        tokens = lru_cache(maxsize=None)(lambda text: tuple(tokenize_for_bleu_eval(text)))
        return lambda cand, ref: compute_bleu([[tokens(ref)]], [tokens(cand)], smooth=True).bleu
    raise ValueError(f"no MBR utility for {language!r}; choose one of {', '.join(MBR_LANGUAGES)}")


__all__ = [
    "MBR_LANGUAGES", "Scored", "WEIGHTS", "candidates", "choose_weight", "completion_logprobs", "execution_distinct",
    "execution_utility", "mbr", "mbr_utility", "mixture_evidence", "ranked", "valid_first",
]  # fmt: skip
