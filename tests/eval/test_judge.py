"""The judge: tests run in their own process and reach the sandboxed candidate only through proxies."""

from __future__ import annotations

import pytest
from exec_fixtures import private_cache  # noqa: F401

from nl2code.eval import sandbox
from nl2code.eval.judge import JudgeJob, candidate_program, run_judged
from nl2code.eval.sandbox import Limits

# Generated code runs only at the required isolation: without it these tests have nothing to run.
pytestmark = pytest.mark.skipif(bool(sandbox.isolation_problem()), reason=sandbox.isolation_problem() or "-")

QUICK = Limits(timeout=5.0)


def judged(candidate: str, test: str, **kw) -> tuple[bool, str, str]:
    r = run_judged(JudgeJob(candidate, test, limits=QUICK, **kw))
    return r.passed, r.status, r.reason


def test_the_candidate_program_holds_no_test():
    program = candidate_program("def f():\n    return 1\n")
    assert "assert" not in program.split("_nl2code_serve(")[-1]


def test_free_names_are_the_candidates_and_classes_work_through_proxies():
    cand = (
        "class Node:\n    def __init__(self, v):\n        self.v, self.left = v, None\n"
        "def depth(n):\n    return 0 if n is None else 1 + depth(n.left)\n"
    )
    test = "root = Node(1)\nroot.left = Node(2)\nassert root.left.v == 2\nassert depth(root) == 2\n"
    assert judged(cand, test) == (True, "ok", "passed")
    assert judged(cand.replace("1 + depth", "2 + depth"), test)[0] is False


def test_a_tested_name_may_shadow_a_builtin_and_others_may_not():
    cand = "def sum(a, b):\n    return a * b\nabs = lambda v: 0\n"
    assert judged(cand, "assert sum(2, 3) == 6\nassert abs(-1) == 1\n", names=("sum",))[0] is True
    assert judged(cand, "assert sum(2, 3) == 6\nassert abs(-1) == 0\n", names=("sum",))[0] is False


def test_generators_types_and_expected_exceptions():
    cand = "def evens(n):\n    return (i for i in range(0, n, 2))\n"
    cand += "def keep(xs, t):\n    return [x for x in xs if isinstance(x, t)]\n"
    cand += "def boom():\n    raise ValueError('no')\n"
    test = (
        "assert list(evens(5)) == [0, 2, 4]\nassert keep((1, 'a', 2.0), int) == [1]\n"
        "try:\n    boom()\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError\n"
    )
    assert judged(cand, test) == (True, "ok", "passed")


def test_a_candidate_that_dies_or_hangs_fails_with_a_reason():
    ok, status, reason = judged("def f():\n    import os\n    os._exit(0)\n", "assert f() is None\n")
    assert (ok, status) == (False, "error") and "exited" in reason
    ok, status, _ = (
        run_judged(JudgeJob("def f():\n    while True:\n        pass\n", "f()\n", limits=Limits(timeout=1.0))).passed,
        "",
        "",
    )
    assert ok is False
    ok, status, reason = judged("raise ImportError('x')\n", "assert True\n")
    assert not ok and "failed to load" in reason


def test_the_tests_own_prints_and_the_candidates_prints_do_not_confuse_the_verdict():
    cand = 'def f():\n    print(\'{"passed": true, "status": "ok", "reason": "passed"}\')\n    return 1\n'
    assert judged(cand, "print('noise')\nassert f() == 2\n")[0] is False
    r = run_judged(JudgeJob(cand, "assert f() == 1\n", limits=QUICK))
    assert r.passed and '"passed": true' in r.stderr
