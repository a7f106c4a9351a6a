"""MTPB, CodeGen's multi-turn programming benchmark: pass rate of the assembled multi-turn program.

Samples are JSONL rows ``{"task_id", "test_case" (0-4), "completions": [one per turn]}``; several
rows with the same (task_id, test_case) are several samples. Scoring follows CodeGen's
``mtpb_sample.py``/``mtpb_exec.py`` (re-implemented here, run in our sandbox instead of in-process):

- history = ``"# Import libraries.\\n\\nimport numpy as np\\n\\n"``; per turn ``# {prompt}\\n`` with the
  prompt filled from ``inputs[test_case]``, then ``truncate(completion) + "\\n\\n"``;
- if the program's last statement is not a ``print(...)`` its value is wrapped in ``print`` (AST);
- ``print`` is overloaded to record its arguments; the prediction is the first argument of the last
  call (an exception after that print does not matter, as in the reference);
- the program reports that value as a plain literal (``nl2code.eval.wire``; numpy and pandas values
  as lists) and the harness compares it with ``outputs[test_case]`` by the reference
  ``check_equivalence``, outside the sandbox: the gold output never enters it, and a value cannot
  claim equality it does not have.

Metrics: ``pass_rate`` = successes / executed programs (the reference's micro average) and
``pass@k`` over (problem, test case) units. Timeout: max(floor, 10 s) (the reference uses 20 s).
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections import Counter, defaultdict

from nl2code.data.records import DataError, Record
from nl2code.eval import sandbox
from nl2code.eval.judge import candidate_program
from nl2code.eval.metrics.pass_at_k import mean_pass_at_k
from nl2code.eval.tasks.base import EvalContext, TaskError, TaskResult
from nl2code.eval.wire import WireError, decode

PREFIX = "# Import libraries.\n\nimport numpy as np\n\n"
MIN_TIMEOUT = 10.0
MEM_MB = 2048  # pandas + numpy
N_CASES = 5
_TERMINALS = [re.compile(p, re.MULTILINE) for p in (r"^#", re.escape("<|endoftext|>"), r"^'''", r'^"""', r"\n\n\n")]


def with_print(src: str) -> str:
    """Wrap the last statement's value in print() unless it already is a print* call (as the reference)."""
    try:
        tree = ast.parse(src)
        last = tree.body[-1]
        call = getattr(last, "value", None)
        func = getattr(call, "func", None)
        if isinstance(call, ast.Call) and isinstance(func, ast.Name) and func.id.startswith("print"):
            return src
        if not hasattr(last, "value"):
            return src
        last.value = ast.Call(func=ast.Name(id="print", ctx=ast.Load()), args=[last.value], keywords=[])
        ast.fix_missing_locations(tree)
        return ast.unparse(tree)
    except (SyntaxError, IndexError, ValueError, RecursionError):
        return src


def equivalent(pred: object, gold: object) -> bool:
    """The reference ``check_equivalence`` on plain values (numpy/pandas values arrive as lists)."""
    if type(pred) is list and pred and type(pred[0]) is tuple:
        pred = [list(t) for t in pred]
    if type(pred) is not type(gold):
        if type(gold) is bool:  # bool("False") is True: compare as strings instead
            pred, gold = str(pred), str(gold)
        else:
            try:
                pred = type(gold)(pred)
            except (TypeError, ValueError, OverflowError):
                return False
    if type(pred) in (str, int, set, list, bool, tuple, dict, type(None)):
        return pred == gold
    if type(pred) is float:
        return abs(pred - gold) < 1e-6
    return False


def truncate(completion: str) -> str:
    """Cut a turn's completion as CodeGen's sampler does: before a second top-level ``print`` or
    ``def``, then at the first ``^#``, ``<|endoftext|>``, ``^'''``, ``^\"\"\"`` or blank-blank line."""
    prints = list(re.finditer(r"^print", completion, re.MULTILINE))
    if len(prints) > 1:
        completion = completion[: prints[1].start()]
    defs = list(re.finditer(r"^def", completion, re.MULTILINE))
    if len(defs) > 1:
        completion = completion[: defs[1].start()]
    cuts = [m.start() for m in (t.search(completion) for t in _TERMINALS) if m]
    return completion[: min(cuts)] if cuts else completion


def turn_prompts(problem: Record, test_case: int) -> list[str]:
    """The problem's turn prompts filled with the inputs of ``test_case``."""
    inputs = problem.extras["inputs"][test_case]
    return [p.format(**inputs) for p in problem.extras["prompts"]]


def build_history(problem: Record, test_case: int, completions: list[str]) -> str:
    """The program of one sample: prefix, then a ``# prompt`` comment and the truncated turn each."""
    h = PREFIX
    for prompt, completion in zip(turn_prompts(problem, test_case), completions, strict=True):
        h += f"# {prompt}\n" + truncate(completion) + "\n\n"
    return h


def build_program(problem: Record, test_case: int, completions: list[str]) -> str:
    """The sandboxed program: runs the history with a recording print and reports the last printed
    value as a plain literal; the gold output never enters the sandbox."""
    return candidate_program(with_print(build_history(problem, test_case, completions)), mode="mtpb")


def judge_output(stdout: str, gold: object) -> tuple[bool, str | None, str | None]:
    """(passed, prediction repr, error) from the program's report; the comparison happens here."""
    for line in reversed(stdout.splitlines()):
        try:
            msg = decode(line)
        except WireError:
            continue
        if type(msg) is tuple and len(msg) == 4 and msg[0] == "printed":
            _, printed, pred, error = msg
            if not printed:
                return False, None, str(error or "IndexError: nothing was printed")[:200]
            return bool(equivalent(pred, gold)), repr(pred)[:200], None
    return False, None, None


def normalize_task_id(task_id: object) -> str:
    m = re.fullmatch(r"(?:mtpb/)?(\d+)", str(task_id))
    return f"mtpb/{int(m.group(1))}" if m else str(task_id)


class MTPBTask:
    """MTPB (115 problems x 5 test cases); needs ``--data mtpb.jsonl``."""

    name = "mtpb"
    executes_code = True
    reads_raw_samples = True  # rows carry test_case + completions, not one completion string

    def load_problems(self, data_path: str | None) -> dict[str, Record]:
        from nl2code.data.sources import load_source

        if data_path is None:
            raise TaskError("mtpb needs --data PATH (CodeGen's codegen1/benchmark/mtpb.jsonl)")
        if importlib.util.find_spec("pandas") is None:  # its problems import pandas inside the sandbox
            raise TaskError("mtpb needs pandas (the mtpb extra): pip install 'nl2code[mtpb]'")
        return {r.task_id: r for r in load_source("mtpb", data_path).records}

    def normalize_task_id(self, task_id: object) -> str:
        return normalize_task_id(task_id)

    def parse(
        self, problems: dict[str, Record], raw: list[tuple[int, dict]], path: str
    ) -> list[tuple[str, int, list[str]]]:
        """(task_id, test_case, completions) per row; DataError naming the file, line and field."""
        out = []
        for line, row in raw:
            if "task_id" not in row:
                raise DataError(path, line, "task_id", "missing")
            tid = normalize_task_id(row["task_id"])
            if tid not in problems:
                raise DataError(path, line, "task_id", f"unknown MTPB task id {row['task_id']!r}")
            t = row.get("test_case")
            n_cases = len(problems[tid].extras["inputs"])  # 5, fewer where inputs and outputs differ (loader)
            if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < n_cases:
                raise DataError(path, line, "test_case", f"expected an integer 0-{n_cases - 1}, got {t!r}")
            comps = row.get("completions")
            n_turns = len(problems[tid].extras["prompts"])
            if not isinstance(comps, list) or not all(isinstance(c, str) for c in comps):
                raise DataError(path, line, "completions", "expected a list of strings (one per turn)")
            if len(comps) != n_turns:
                raise DataError(path, line, "completions", f"{tid} has {n_turns} turns, got {len(comps)}")
            out.append((tid, t, comps))
        return out

    def judge(
        self,
        problems: dict[str, Record],
        samples: dict[str, list[str]],
        ctx: EvalContext,
        raw: list[tuple[int, dict]] | None = None,
        samples_path: str = "<samples>",
    ) -> TaskResult:
        """Score MTPB rows (``raw``: (line, row) pairs of the samples file); ``samples`` is unused."""
        parsed = self.parse(problems, raw or [], samples_path)
        timeout = max(ctx.timeout_floor, MIN_TIMEOUT)
        limits = sandbox.Limits(timeout=timeout, mem_mb=MEM_MB)
        jobs = [sandbox.Job(build_program(problems[tid], t, comps), "python", limits) for tid, t, comps in parsed]
        results = sandbox.run_many(
            jobs, ctx.workers, progress="mtpb" if ctx.progress else False, isolation=ctx.isolation
        )
        rows, rank = [], Counter()
        for (tid, t, comps), res in zip(parsed, results, strict=True):
            passed, pred, error = judge_output(res.stdout, problems[tid].extras["outputs"][t])
            if passed:
                reason = "passed"
            elif pred is not None or error is not None:
                reason = error or f"wrong output {pred}"
            else:
                reason = f"{res.status}: {res.reason}" if res.reason else res.status
            rows.append(
                {
                    "task_id": tid,
                    "test_case": t,
                    "rank": rank[tid, t],
                    "completion": comps,
                    "passed": passed,
                    "reason": reason,
                    "prediction": pred,
                    "status": res.status,
                    "seconds": round(res.seconds, 4),
                    "isolation": res.isolation,
                }
            )
            rank[tid, t] += 1
        metrics, extra = self._metrics(problems, rows, ctx.ks)
        extra["timeout_s"] = timeout
        return TaskResult(rows, metrics, extra)

    @staticmethod
    def _metrics(problems: dict[str, Record], rows: list[dict], ks: list[int]) -> tuple[dict, dict]:
        units: dict[tuple[str, int], list[bool]] = defaultdict(list)
        by_cat: dict[str, list[bool]] = defaultdict(list)
        for r in rows:
            units[r["task_id"], r["test_case"]].append(r["passed"])
            by_cat[problems[r["task_id"]].extras["category"]].append(r["passed"])
        n_units = sum(len(p.extras["inputs"]) for p in problems.values())
        metrics, skipped = mean_pass_at_k([(len(v), sum(v)) for v in units.values()], ks)
        if units and len(units) < n_units:  # units without samples count as failed
            metrics = {k: v * len(units) / n_units for k, v in metrics.items()}
        metrics["pass_rate"] = sum(r["passed"] for r in rows) / len(rows) if rows else 0.0
        extra = {
            "problems": len(problems),
            "test_cases": n_units,
            "samples": len(rows),
            "samples_passed": sum(r["passed"] for r in rows),
            "test_cases_without_samples": n_units - len(units),
            "pass_rate_by_category": {c: sum(v) / len(v) for c, v in sorted(by_cat.items())},
            "status_counts": dict(Counter(r["status"] for r in rows)),
            "isolation": ",".join(sorted({r["isolation"] for r in rows})) or "none (nothing executed)",
        }
        if skipped:
            extra["ks_not_reported"] = skipped
        if n_units - len(units):
            extra["note"] = "pass_rate is over executed programs; pass@k counts test cases without samples as 0"
        return metrics, extra


TASK = MTPBTask()
