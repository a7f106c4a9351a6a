"""MBPP: test split 11-510, program = completion + setup + asserts; reference code passes its asserts."""

from __future__ import annotations

import pytest
from exec_fixtures import private_cache  # noqa: F401

from nl2code.cli import CLIError
from nl2code.eval import sandbox
from nl2code.eval.tasks import EvalContext
from nl2code.eval.tasks.mbpp import TASK, judge_job

# Generated code runs only at the required isolation: without it these tests have nothing to run.
pytestmark = pytest.mark.skipif(bool(sandbox.isolation_problem()), reason=sandbox.isolation_problem() or "-")

CTX = EvalContext(ks=[1], workers=2, progress=False)


@pytest.fixture(scope="module")
def problems(shared_data):
    return TASK.load_problems(str(shared_data / "mbpp" / "mbpp.jsonl"))


def test_test_split_is_task_ids_11_to_510(problems):
    ids = sorted(int(t.split("/")[1]) for t in problems)
    assert ids == list(range(11, 511))


def test_ids_are_normalized():
    assert {TASK.normalize_task_id(x) for x in (11, "11", "mbpp/11", "Mbpp/11")} == {"mbpp/11"}


def test_needs_a_data_path():
    with pytest.raises(CLIError, match="--data"):
        TASK.load_problems(None)


def test_candidate_is_the_completion_alone_and_the_judge_runs_setup_and_asserts(problems):
    p = problems["mbpp/11"]
    job = judge_job(p, "CODE")
    assert job.candidate == "CODE"
    assert job.test.startswith(p.extras["test_setup_code"] + "\n" + "\n".join(p.extras["test_list"]))
    assert job.call is None


def test_reference_code_passes_and_wrong_code_fails_on_a_subset(problems):
    """30 problems here; the full 500 are counted by benchmarks/gold_validation.py."""
    subset = {t: problems[t] for t in sorted(problems, key=lambda t: int(t.split("/")[1]))[:30]}
    samples = {t: [p.code, "def unrelated():\n    return 0\n"] for t, p in subset.items()}
    res = TASK.judge(subset, samples, CTX)
    gold = [r for r in res.results if r["rank"] == 0]
    assert all(r["passed"] for r in gold), [r for r in gold if not r["passed"]]
    assert not any(r["passed"] for r in res.results if r["rank"] == 1)
    assert res.metrics["pass@1"] == pytest.approx(0.5)
