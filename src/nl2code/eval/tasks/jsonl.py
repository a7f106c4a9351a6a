"""Your own pairs as a benchmark: ``nl2code eval jsonl --data pairs.jsonl --samples S.jsonl``.

The problems are the ``test`` rows of the file, read by the ``jsonl`` data source exactly as training
reads them (rows without ``split`` are assigned by the same hash), so the pairs a run held out are
the pairs it is scored on. To score every row of a separate file, give its rows ``"split": "test"``.

Metrics, over all problems (a problem without candidates counts as wrong):

* ``exact_match@k``: a whitespace-normalised candidate equal to the reference among the first k;
* ``bleu``: CoNaLa's corpus BLEU-4 x100 of the first candidates;
* ``syntax_valid``: the fraction of candidates that parse, over rows whose language has a checker
  (python, bash, cf); ``codebleu`` (and its components) over the python rows' first candidates;
* ``pass@k``, when rows carry ``tests`` (a list of MBPP-style assert lines, with an optional
  ``test_setup_code`` string): the candidates of those rows run in the sandbox and the asserts in
  the judge, exactly as MBPP's do (``nl2code.eval.tasks.mbpp``); pass@k is over the rows with tests.
"""

from __future__ import annotations

from nl2code.data.records import DataError, Record
from nl2code.eval.judge import JudgeJob
from nl2code.eval.metrics.bleu import conala_bleu
from nl2code.eval.metrics.codebleu import codebleu
from nl2code.eval.metrics.exact_match import exact_match
from nl2code.eval.metrics.syntax import LANGUAGES, syntax_valid
from nl2code.eval.tasks._text import diversity_metrics, load_split, missing_note, prefixed_id, topk_metrics
from nl2code.eval.tasks.base import EvalContext, TaskResult
from nl2code.eval.tasks.execution import judge_checks
from nl2code.eval.tasks.mbpp import names_tested

__all__ = ["TASK", "JsonlTask", "judge_job"]

EXAMPLE = "your pairs.jsonl: one {nl, code} a line, optional language, split, task_id, tests"


def judge_job(problem: Record, completion: str) -> JudgeJob:
    """The candidate alone in the sandbox, the row's setup code and asserts in the judge."""
    setup = problem.extras.get("test_setup_code", "")
    test = setup + "\n" + "\n".join(problem.extras["tests"]) + "\n"
    return JudgeJob(completion, test, names=names_tested(problem.code, test))


class JsonlTask:
    name = "jsonl"

    def load_problems(self, data_path: str | None) -> dict[str, Record]:
        problems = load_split(self.name, "jsonl", data_path, "test", EXAMPLE)
        for rec in problems.values():
            setup = rec.extras.get("test_setup_code", "")
            if not isinstance(setup, str):
                raise DataError(str(data_path), rec.extras["line"], "test_setup_code", "expected a string")
        return problems

    def executes_code_for(self, data_path: str | None) -> bool:
        """Whether any test row carries ``tests``: only then is generated code run (and the sandbox needed)."""
        return any("tests" in r.extras for r in self.load_problems(data_path).values())

    def normalize_task_id(self, task_id: object) -> str:
        return prefixed_id("jsonl", task_id)

    def judge(self, problems: dict[str, Record], samples: dict[str, list[str]], ctx: EvalContext) -> TaskResult:
        ids = list(problems)
        rows: list[dict] = []
        exact: dict[str, list[bool]] = {}
        checked = valid = 0
        for tid in ids:
            rec = problems[tid]
            exact[tid] = []
            for rank, cand in enumerate(samples.get(tid, [])):
                row = {"task_id": tid, "rank": rank, "completion": cand, "reference": rec.code, "nl": rec.nl}
                row["matched"] = exact_match(cand, rec.code)
                exact[tid].append(row["matched"])
                if rec.language in LANGUAGES:
                    row["syntax_valid"] = syntax_valid(cand, rec.language)
                    checked += 1
                    valid += row["syntax_valid"]
                rows.append(row)
        firsts = {t: (samples.get(t) or [""])[0] for t in ids}
        metrics = {"bleu": conala_bleu([problems[t].code for t in ids], [firsts[t] for t in ids])}
        metrics |= topk_metrics("exact_match", exact, ctx.ks, ids)
        extra = missing_note(problems, samples) | {"bleu_scale": "x100 (CoNaLa)"}
        extra["languages"] = {
            lang: sum(r.language == lang for r in problems.values())
            for lang in sorted({r.language for r in problems.values()})
        }
        if checked:
            metrics["syntax_valid"] = valid / checked
        python = [t for t in ids if problems[t].language == "python"]
        if python:
            cb = codebleu([problems[t].code for t in python], [firsts[t] for t in python], lang="python")
            metrics |= cb.as_metrics()
            extra |= {"codebleu_problems": len(python), "codebleu_scale": "[0, 1]"}
        else:
            extra["codebleu"] = "skipped: no python rows (set the rows' language, or data.options.language)"
        tested = {t: problems[t] for t in ids if "tests" in problems[t].extras}
        if tested:
            executed = judge_checks(self.name, tested, {t: samples[t] for t in tested if t in samples}, ctx, judge_job)
            metrics |= executed.metrics
            verdicts = {(r["task_id"], r["rank"]): r for r in executed.results}
            for row in rows:
                v = verdicts.get((row["task_id"], row["rank"]))
                if v is not None:
                    row |= {k: v[k] for k in ("passed", "status", "reason", "seconds", "isolation")}
            extra |= {f"execution_{k}": v for k, v in executed.extra.items()}
            extra["isolation"] = executed.extra["isolation"]
        div, n_div = diversity_metrics(samples, max(ctx.ks))
        metrics |= div
        extra["diversity_problems"] = n_div
        return TaskResult(rows, metrics, extra)


TASK = JsonlTask()
