"""Minimum Bayes risk rankings of the ``--mbr`` samples for benchmarks/bash_matched.py (#18): plain, as a set of
5, and under a mixture with the TF-IDF neighbours (``--mbr-retrieval``), whose share is chosen on the rows each
run held out of training; and the neighbours' own consensus, the control for the mixture."""

from __future__ import annotations

import argparse
import sys
import time
from functools import lru_cache
from typing import Any

from matched_langs import LANGUAGES, judge, utility_of


def mbr_label(args: argparse.Namespace) -> str | None:
    """The label of the ``--mbr`` sampling setting (None when off)."""
    lang = LANGUAGES[args.language]
    metric = {"bash": "cms", "python": "bleu", "cf": "execution"}.get(lang.syntax)
    return f"{args.mbr} samples, MBR ({metric})" if args.mbr and lang.mbr else None


def is_mbr(setting: str, args: argparse.Namespace) -> bool:
    """Whether ``setting`` (a label of :func:`sampler`) is the ``--mbr`` one (CodeFusion's starts with its steps)."""
    label = mbr_label(args)
    return bool(label) and setting.endswith(label)


def draw(gen: Any, cfg: Any, problems: dict) -> tuple[dict[str, list[str]], float]:
    """(candidate texts by task id as generated, sampling seconds)."""
    ids = list(problems)
    t0 = time.monotonic()
    cands = gen.generate([problems[i].nl for i in ids], cfg)
    return {i: [c.text for c in cs] for i, cs in zip(ids, cands, strict=True)}, round(time.monotonic() - t0, 1)


MBR_SET = 5  # the set variant chooses the first KS[-1] for the best-of-k metrics
SHARES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)  # retrieval's share of the MBR evidence, chosen on held-out rows


def rankings(
    label: str,
    samples: dict[str, list[str]],
    args: argparse.Namespace,
    mix: tuple[float, dict] | None = None,
    problems: dict[str, Any] | None = None,
) -> dict[str, dict[str, list[str]]]:
    """Setting label -> candidates by task id: as generated, except the ``--mbr`` setting's samples, ranked by
    minimum Bayes risk under the language's utility (no gold is read: the samples are their own evidence), once
    plainly and once with the first 5 chosen as a set (``, set of 5``: rerank.mbr with k, for CMS@3/@5). With
    ``mix`` = (share, retrieved programs by task id) (``--mbr-retrieval``), also the samples and the retrieved
    programs ranked under their mixture (rerank.mixture_evidence), plainly and as a set. ``problems`` by task id:
    the requests, for a utility that runs the programs on their input (CF)."""
    from nl2code.generation.rerank import mbr, mixture_evidence

    if not is_mbr(label, args):
        return {label: samples}
    lang = LANGUAGES[args.language]
    names = [label, f"{label}, set of {MBR_SET}"]
    if mix:
        share, near = mix
        names += [f"{label} + retrieval {share:g}", f"{label} + retrieval {share:g}, set of {MBR_SET}"]
    out: dict[str, dict[str, list[str]]] = {name: {} for name in names}
    for i, s in samples.items():
        u = lru_cache(maxsize=None)(utility_of(lang, problems and problems[i]))  # each pair scored once per row
        out[names[0]][i], out[names[1]][i] = mbr(s, u), mbr(s, u, k=MBR_SET)
        if mix:
            pool, evidence = s + near[i], mixture_evidence(s, near[i], share)
            out[names[2]][i], out[names[3]][i] = mbr(pool, u, evidence), mbr(pool, u, evidence, k=MBR_SET)
    return out


def consensus(lang: Any, near: dict[str, list[str]], problems: dict[str, Any] | None = None) -> dict[str, list[str]]:
    """Each row's retrieved programs ranked by minimum Bayes risk among themselves, the first 5 as a set: what
    retrieval-augmented MBR gets from the neighbours alone, with no model (``problems``: as for :func:`rankings`)."""
    from nl2code.generation.rerank import mbr

    return {t: mbr(n, utility_of(lang, problems and problems[t]), k=MBR_SET) for t, n in near.items()}


def headline(lang: Any) -> str:
    """The metric a choice on held-out rows maximises: BLEU for Python, else the first metric at top-1."""
    return "bleu" if "bleu" in lang.extras else f"{lang.metrics[0]}@1"


def held_out(run: Any, limit: int, seed: int, what: str) -> tuple[list[Any], dict[str, Any]]:
    """(the run's training rows, up to ``limit`` seeded rows of the part it held out of training by task id;
    ``data.eval_fraction``); exits naming ``what`` when it held out none. Choices made on these rows never read a
    test row."""
    from nl2code.data.pipeline import load_splits
    from nl2code.train.config import trained_data
    from nl2code.utils.seed import seeded_subset

    train, held, _ = load_splits(trained_data(run.config))
    if not held:
        sys.exit(f"{what}: the run held out no rows (data.eval_fraction 0)")
    keep = set(seeded_subset([r.task_id for r in held], limit or None, seed))
    return train, {r.task_id: r for r in held if r.task_id in keep}


def choose_share(gen: Any, cfg: Any, run: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Retrieval's share of the ``--mbr-retrieval`` mixture, chosen by the headline metric on up to ``--limit``
    seeded rows the run held out of its training (``data.eval_fraction``; retrieval over its training rows):
    never on the test rows. Ties go to the smaller share."""
    from bash_baselines import retrieval_samples

    from nl2code.generation.rerank import mbr, mixture_evidence

    lang = LANGUAGES[args.language]
    train, rows = held_out(run, args.limit, args.seed, "--mbr-retrieval: no rows to choose the share on")
    drawn, _ = draw(gen, cfg, rows)
    near = retrieval_samples(train, rows, lang.pool)
    metric = headline(lang)
    ranked: dict[float, dict[str, list[str]]] = {share: {} for share in SHARES}
    for t, s in drawn.items():
        u = lru_cache(maxsize=None)(utility_of(lang, rows[t]))  # the shares rank the same pairs: each scored once
        for share in SHARES:
            ranked[share][t] = mbr(s + near[t], u, mixture_evidence(s, near[t], share))
    scores = {share: judge(lang, rows, by_row)[metric] for share, by_row in ranked.items()}
    best = max(SHARES, key=lambda x: scores[x])  # the first of equals: the smaller share
    return {"share": best, "metric": metric, "held_out_rows": len(rows), "scores": scores}
