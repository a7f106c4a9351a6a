"""HumanEval: what runs where, per-problem timeouts, and the acceptance numbers
(canonical solutions 164/164, ``return None`` 0/164)."""

from __future__ import annotations

import pytest
from exec_fixtures import add_one_problem, private_cache  # noqa: F401

from nl2code.eval import sandbox
from nl2code.eval.tasks import EvalContext, get_task
from nl2code.eval.tasks.execution import problem_timeouts
from nl2code.eval.tasks.humaneval import TASK, judge_job

# Generated code runs only at the required isolation: without it these tests have nothing to run.
pytestmark = pytest.mark.skipif(bool(sandbox.isolation_problem()), reason=sandbox.isolation_problem() or "-")

CTX = EvalContext(ks=[1], workers=2, progress=False)


def test_registry_returns_the_task():
    assert get_task("humaneval") is TASK
    assert TASK.normalize_task_id("7") == "HumanEval/7" and TASK.normalize_task_id("HumanEval/7") == "HumanEval/7"


def test_candidate_gets_prompt_and_completion_and_the_judge_gets_the_tests(add_one_problem):  # noqa: F811
    p = add_one_problem["Toy/0"]
    job = judge_job(p, "    return x + 1\n")
    x = p.extras
    assert job.candidate == x["prompt"] + "    return x + 1\n"
    assert x["test"] not in job.candidate and "check" not in job.candidate
    assert (job.setup, job.test, job.call, job.entry_point) == (x["prompt"], x["test"], "check", "add_one")


def test_exit_zero_before_the_tests_is_not_a_pass(add_one_problem):  # noqa: F811
    comps = ["    import os\n    os._exit(0)\n", "    return x + 2\n", "    return x + 1\n", "    return x +\n"]
    res = TASK.judge(add_one_problem, {"Toy/0": comps}, CTX)
    passed = [r["passed"] for r in res.results]
    assert passed == [False, False, True, False]
    assert res.results[0]["reason"] == "candidate exited before the tests completed"
    assert res.results[1]["reason"] == "assertion failed"
    assert "SyntaxError" in res.results[3]["reason"]
    assert res.metrics["pass@1"] == pytest.approx(0.25)


def test_timeout_is_factor_times_reference_runtime_with_a_floor(add_one_problem):  # noqa: F811
    p = add_one_problem["Toy/0"]
    slow = {"Toy/0": judge_job(p, "    import time\n    time.sleep(0.4)\n    return x + 1\n")}
    fast = {"Toy/0": judge_job(p, p.code)}
    ctx = EvalContext(ks=[1], workers=1, timeout_factor=10.0, timeout_floor=0.5, progress=False)
    assert problem_timeouts(["Toy/0"], slow, ctx)["Toy/0"] >= 10 * 0.8  # two sleeps of 0.4 s
    assert problem_timeouts(["Toy/0"], fast, ctx)["Toy/0"] < 10 * 0.8
    assert problem_timeouts(["Toy/0"], None, ctx)["Toy/0"] == 0.5


def test_canonical_solutions_all_pass_and_return_none_all_fail():
    """The acceptance check on all 164 problems (about 10 s with 2 workers)."""
    problems = TASK.load_problems(None)
    assert len(problems) == 164
    ctx = EvalContext(ks=[1], workers=2, timeout_factor=0.0, progress=False)
    gold = TASK.judge(problems, {t: [p.code] for t, p in problems.items()}, ctx)
    assert gold.metrics["pass@1"] == 1.0, [r for r in gold.results if not r["passed"]][:3]
    assert gold.extra["samples_passed"] == 164
    none = TASK.judge(problems, {t: ["    return None\n"] for t in problems}, ctx)
    assert none.metrics["pass@1"] == 0.0, [r["task_id"] for r in none.results if r["passed"]]


def test_pass_at_k_with_several_candidates(add_one_problem):  # noqa: F811
    comps = ["    return x\n", "    return x + 1\n", "    return 0\n"]
    res = TASK.judge(add_one_problem, {"Toy/0": comps}, EvalContext(ks=[1, 2, 3, 5], workers=2, progress=False))
    assert res.metrics == pytest.approx({"pass@1": 1 / 3, "pass@2": 2 / 3, "pass@3": 1.0})
    assert res.extra["ks_not_reported"] == [5]
    assert [r["rank"] for r in res.results] == [0, 1, 2]
