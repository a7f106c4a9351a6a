"""Shared pieces of the text-metric tasks (NL2Bash, CF rules, CoNaLa): loading, top-k, diversity."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import mean

from nl2code.data.records import Record
from nl2code.eval.metrics.diversity import diversity
from nl2code.eval.metrics.exact_match import rates_at_k
from nl2code.eval.tasks.base import TaskError

__all__ = ["diversity_metrics", "load_split", "missing_note", "prefixed_id", "topk_metrics"]


def load_split(task: str, source: str, data_path: str | None, split: str | None, example: str) -> dict[str, Record]:
    """task_id -> Record of ``split`` (all records when None) from ``load_source(source, data_path)``."""
    from nl2code.data.sources import load_source

    if data_path is None:
        raise TaskError(f"{task} needs --data PATH ({example})")
    records = load_source(source, data_path).records
    chosen = {r.task_id: r for r in records if split is None or r.split == split}
    if not chosen:
        raise TaskError(f"{task}: no {split or ''} records in {data_path}")
    return chosen


def prefixed_id(prefix: str, task_id: object) -> str:
    """Accept bare ids (``17``) for tasks whose ids are ``<prefix>/17``."""
    s = str(task_id)
    return s if "/" in s else f"{prefix}/{s}"


def topk_metrics(
    name: str, correct: dict[str, list[bool]], ks: Sequence[int], problem_ids: Sequence[str]
) -> dict[str, float]:
    """``{name}@k`` for each k: fraction of problems with a correct candidate among the first k."""
    return {f"{name}@{k}": v for k, v in rates_at_k(correct, ks, problem_ids).items()}


def diversity_metrics(
    samples: dict[str, list[str]], k: int, embed: Callable | None = None
) -> tuple[dict[str, float], int]:
    """Mean diversity over problems with at least two of their first ``k`` candidates.

    Returns (metrics named ``diversity_<measure>``, number of problems that took part).
    """
    per = [diversity(c[:k], embed) for c in samples.values() if len(c[:k]) >= 2]
    if not per:
        return {}, 0
    out = {}
    for key in per[0]:
        values = [d[key] for d in per if d[key] is not None]
        if values:
            out[f"diversity_{key}"] = mean(values)
    return out, len(per)


def missing_note(problems: dict[str, Record], samples: dict[str, list[str]]) -> dict[str, int]:
    """Counts for summary.json: problems without candidates count as wrong."""
    missing = sum(1 for p in problems if not samples.get(p))
    return {"problems": len(problems), "problems_without_samples": missing}
