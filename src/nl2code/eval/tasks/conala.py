"""Python text-to-code tasks scored by text metrics: "conala" and "codefusion-python".

* ``conala``: CoNaLa curated test split (500), ``--data`` = the folder with ``conala-test.json`` (or
  the file itself).
* ``codefusion-python``: the test split of CodeFusion's ``PythonBenchmarks.json`` (the same 500
  CoNaLa rows; null NL filled from CoNaLa's intent by the loader).

Metrics: ``bleu`` = CoNaLa's official corpus BLEU-4 x100 of the first candidates (a problem without
candidates contributes an empty prediction), ``exact_match@k`` (CoNaLa token equality, any of the
first k), ``syntax_valid`` (fraction of candidates ``ast.parse`` accepts), ``codebleu`` and its four
components on the first candidates plus ``codebleu_dataflow_floor`` (pairs whose data-flow score 0
was replaced by 1), diversity. CodeBERTScore (best of the first k, F1 and F3) is added when the
environment variable ``NL2CODE_CODEBERTSCORE_MODEL`` names a local encoder directory
(``NL2CODE_CODEBERTSCORE_LAYER`` picks the hidden layer; 11 for ``neulab/codebert-python``).
"""

from __future__ import annotations

import os

from nl2code.data.records import Record
from nl2code.eval.metrics.bleu import conala_bleu, conala_exact_match
from nl2code.eval.metrics.codebertscore import CodeBertScorer, best_of_k
from nl2code.eval.metrics.codebleu import codebleu
from nl2code.eval.metrics.syntax import python_valid
from nl2code.eval.tasks._text import diversity_metrics, load_split, missing_note, prefixed_id, topk_metrics
from nl2code.eval.tasks.base import EvalContext, TaskResult

__all__ = ["PythonTextTask", "TASKS"]

MODEL_ENV, LAYER_ENV = "NL2CODE_CODEBERTSCORE_MODEL", "NL2CODE_CODEBERTSCORE_LAYER"


class PythonTextTask:
    executes_code = False  # scored from the text alone

    def __init__(self, name: str, source: str, example: str):
        self.name, self.source, self.example = name, source, example

    def load_problems(self, data_path: str | None) -> dict[str, Record]:
        return load_split(self.name, self.source, data_path, "test", self.example)

    def normalize_task_id(self, task_id: object) -> str:
        return prefixed_id(self.source, task_id)

    def judge(self, problems: dict[str, Record], samples: dict[str, list[str]], ctx: EvalContext) -> TaskResult:
        ids = list(problems)
        rows: list[dict] = []
        exact: dict[str, list[bool]] = {}
        valid = total = 0
        for tid in ids:
            exact[tid] = []
            for rank, cand in enumerate(samples.get(tid, [])):
                em = conala_exact_match(cand, problems[tid].code)
                ok = python_valid(cand)
                total += 1
                valid += ok
                exact[tid].append(em)
                rows.append({"task_id": tid, "rank": rank, "completion": cand, "matched": em, "syntax_valid": ok})
        refs = [problems[t].code for t in ids]
        firsts = [(samples.get(t) or [""])[0] for t in ids]
        metrics = {"bleu": conala_bleu(refs, firsts)}
        metrics |= topk_metrics("exact_match", exact, ctx.ks, ids)
        metrics["syntax_valid"] = valid / total if total else 0.0
        cb = codebleu(refs, firsts, lang="python")
        metrics |= cb.as_metrics()
        extra = missing_note(problems, samples) | {"bleu_scale": "x100 (CoNaLa)", "codebleu_scale": "[0, 1]"}
        model_dir = os.environ.get(MODEL_ENV)
        if model_dir:
            layer = os.environ.get(LAYER_ENV)
            scorer = CodeBertScorer(model_dir, layer=int(layer) if layer else None)
            for k in ctx.ks:
                for field in ("f1", "f3"):
                    metrics[f"codebertscore_{field}@{k}"] = 0.0
            for tid in ids:
                cands = samples.get(tid, [])[: max(ctx.ks)]
                scores = scorer.score(cands, [problems[tid].code] * len(cands))
                for k in ctx.ks:
                    for field in ("f1", "f3"):
                        metrics[f"codebertscore_{field}@{k}"] += best_of_k(scores, k, field) / len(ids)
            extra["codebertscore_model"] = model_dir
        else:
            extra["codebertscore"] = f"skipped: set {MODEL_ENV} to a local encoder directory"
        div, n_div = diversity_metrics(samples, max(ctx.ks))
        metrics |= div
        extra["diversity_problems"] = n_div
        return TaskResult(rows, metrics, extra)


TASKS = {
    "conala": PythonTextTask("conala", "conala", "the folder with conala-test.json, e.g. ../shared/data/conala"),
    "codefusion-python": PythonTextTask(
        "codefusion-python",
        "codefusion-python",
        "PythonBenchmarks.json, e.g. ../shared/data/codefusion/benchmarks/PythonBenchmarks.json",
    ),
}
