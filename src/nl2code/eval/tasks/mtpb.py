"""MTPB, CodeGen's multi-turn programming benchmark: pass rate of the assembled multi-turn program.

Samples are JSONL rows ``{"task_id", "test_case" (0-4), "completions": [one per turn]}``; several
rows with the same (task_id, test_case) are several samples. Scoring follows CodeGen's
``mtpb_sample.py``/``mtpb_exec.py`` (re-implemented here, run in our sandbox instead of in-process):

- history = ``"# Import libraries.\\n\\nimport numpy as np\\n\\n"``; per turn ``# {prompt}\\n`` with the
  prompt filled from ``inputs[test_case]``, then ``truncate(completion) + "\\n\\n"``;
- if the program's last statement is not a ``print(...)`` its value is wrapped in ``print`` (AST);
- ``print`` is overloaded to record its arguments; the prediction is the first argument of the last
  call (an exception after that print does not matter, as in the reference);
- the prediction is compared with ``outputs[test_case]`` by the reference ``check_equivalence``.

Metrics: ``pass_rate`` = successes / executed programs (the reference's micro average) and
``pass@k`` over (problem, test case) units. Timeout: max(floor, 10 s) (the reference uses 20 s).
"""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter, defaultdict

from nl2code.data.records import DataError, Record
from nl2code.eval import sandbox
from nl2code.eval.metrics.pass_at_k import mean_pass_at_k
from nl2code.eval.tasks.base import EvalContext, TaskResult

PREFIX = "# Import libraries.\n\nimport numpy as np\n\n"
MIN_TIMEOUT = 10.0
MEM_MB = 2048  # pandas + numpy
N_CASES = 5
_TERMINALS = [re.compile(p, re.MULTILINE) for p in (r"^#", re.escape("<|endoftext|>"), r"^'''", r'^"""', r"\n\n\n")]

# Runs inside the sandbox: executes the history with a recording print, then judges the last printed
# value. Only builtins, ast, json and numpy/pandas are used; the verdict line carries a nonce.
_DRIVER = r'''
import ast as _ast, builtins as _builtins, io as _io, json as _json, os as _os, sys as _sys

def _with_print(src):
    """Wrap the last statement's value in print() unless it already is a print* call."""
    try:
        tree = _ast.parse(src)
        last = tree.body[-1]
        call = getattr(last, "value", None)
        func = getattr(call, "func", None)
        if isinstance(call, _ast.Call) and isinstance(func, _ast.Name) and func.id.startswith("print"):
            return src
        if not hasattr(last, "value"):
            return src
        last.value = _ast.Call(func=_ast.Name(id="print", ctx=_ast.Load()), args=[last.value], keywords=[])
        _ast.fix_missing_locations(tree)
        return _ast.unparse(tree)
    except Exception:
        return src

def _equivalent(pred, gold):
    import numpy as np
    if type(pred).__module__.startswith("pandas") and type(pred).__name__ == "Series":
        pred, gold = pred.to_numpy(), np.array(gold)
    elif type(pred) is list:
        if pred and type(pred[0]) is tuple:
            pred = [list(t) for t in pred]
    elif type(pred) in (np.uint8, np.int16, np.int32, np.int64):
        pred = int(pred)
    elif type(pred) in (np.float16, np.float32, np.float64):
        pred = float(pred)
    elif type(pred) is np.bool_:
        pred = bool(pred)
    elif type(pred) is np.ndarray:
        pred = pred.tolist()
    if type(pred) is not type(gold):
        if type(gold) is bool:  # bool("False") is True: compare as strings instead
            pred, gold = str(pred), str(gold)
        else:
            pred = type(gold)(pred)
    if type(pred) in (str, int, set, list, bool, tuple):
        return pred == gold
    if type(pred) is float:
        return abs(pred - gold) < 1e-6
    if type(pred) is np.ndarray:
        return bool(np.allclose(pred, gold))
    raise ValueError(f"unsupported type {type(pred).__name__}")

class _Sink(_io.TextIOBase):
    def write(self, s):
        return len(s)

_printed = []

def _recording_print(*args, **kwargs):
    _printed.append(args)
    return _builtins.print(*args, **kwargs)

_out = _sys.stdout
_sys.stdout = _Sink()
_error = None
try:
    exec(compile(_with_print(_SOURCE), "<mtpb>", "exec"), {"__name__": "__main__", "print": _recording_print})
except BaseException as e:
    _error = f"{type(e).__name__}: {e}"[:200]
_sys.stdout = _out
verdict = {"passed": False, "prediction": None, "error": _error}
try:
    if not _printed or not _printed[-1]:
        raise IndexError("nothing was printed")
    pred = _printed[-1][0]
    verdict["prediction"] = repr(pred)[:200]
    verdict["passed"] = bool(_equivalent(pred, _json.loads(_GOLD)))
except BaseException as e:
    verdict["error"] = f"{type(e).__name__}: {e}"[:200]
_out.write(_NONCE + _json.dumps(verdict) + "\n")
_out.flush()
_os._exit(0)
'''


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


def build_program(problem: Record, test_case: int, completions: list[str], nonce: str) -> str:
    """History + the judging driver, runnable in the sandbox."""
    gold = json.dumps(problem.extras["outputs"][test_case])
    source = build_history(problem, test_case, completions)
    return f"_SOURCE = {source!r}\n_GOLD = {gold!r}\n_NONCE = {nonce!r}\n" + _DRIVER


def normalize_task_id(task_id: object) -> str:
    m = re.fullmatch(r"(?:mtpb/)?(\d+)", str(task_id))
    return f"mtpb/{int(m.group(1))}" if m else str(task_id)


class MTPBTask:
    """MTPB (115 problems x 5 test cases); needs ``--data mtpb.jsonl``."""

    name = "mtpb"
    reads_raw_samples = True  # rows carry test_case + completions, not one completion string

    def load_problems(self, data_path: str | None) -> dict[str, Record]:
        from nl2code.cli import CLIError
        from nl2code.data.sources import load_source

        if data_path is None:
            raise CLIError("mtpb needs --data PATH (CodeGen's codegen1/benchmark/mtpb.jsonl)")
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
            if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < N_CASES:
                raise DataError(path, line, "test_case", f"expected an integer 0-{N_CASES - 1}, got {t!r}")
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
        nonce = f"__nl2code_mtpb__{secrets.token_hex(8)}"
        timeout = max(ctx.timeout_floor, MIN_TIMEOUT)
        limits = sandbox.Limits(timeout=timeout, mem_mb=MEM_MB)
        jobs = [
            sandbox.Job(build_program(problems[tid], t, comps, nonce), "python", limits) for tid, t, comps in parsed
        ]
        results = sandbox.run_many(jobs, ctx.workers, progress="mtpb" if ctx.progress else False)
        rows, rank = [], Counter()
        for (tid, t, comps), res in zip(parsed, results, strict=True):
            line = next((ln for ln in res.stdout.splitlines() if ln.startswith(nonce)), None)
            if line is not None:
                v = json.loads(line[len(nonce) :])
                passed = bool(v["passed"])
                reason = "passed" if passed else (v["error"] or f"wrong output {v['prediction']}")
                pred = v["prediction"]
            else:
                passed, pred = False, None
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
        n_units = len(problems) * N_CASES
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
            "isolation": ",".join(sorted({r["isolation"] for r in rows})) or sandbox.best_isolation(),
        }
        if skipped:
            extra["ks_not_reported"] = skipped
        if n_units - len(units):
            extra["note"] = "pass_rate is over executed programs; pass@k counts test cases without samples as 0"
        return metrics, extra


TASK = MTPBTask()
