"""``nl2code eval jsonl``: your own pairs scored by text metrics, and by tests in the sandbox when rows carry them."""

from __future__ import annotations

import json

import pytest
from exec_fixtures import private_cache  # noqa: F401

from nl2code import cli
from nl2code.eval import sandbox

needs_sandbox = pytest.mark.skipif(bool(sandbox.isolation_problem()), reason=sandbox.isolation_problem() or "-")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def eval_cli(*argv) -> int:
    return cli.main(["eval", "jsonl", *map(str, argv), "--no-progress", "--workers", "2"])


def test_text_metrics_without_language_or_split(tmp_path, capsys):
    pairs = [{"nl": f"print {i}", "code": f"echo {i}"} for i in range(60)]
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    from nl2code.eval.tasks import get_task

    problems = get_task("jsonl").load_problems(str(data))
    assert 1 <= len(problems) < 60  # the hashed test split
    tids = list(problems)
    rows = [{"task_id": tids[0], "completion": problems[tids[0]].code}, {"task_id": tids[0], "completion": "ls"}]
    rows += [{"task_id": t, "completion": "ls"} for t in tids[1:]]
    samples = write_jsonl(tmp_path / "s.jsonl", rows)
    assert eval_cli("--data", data, "--samples", samples, "--out", tmp_path / "out", "--k", "1,2") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["metrics"]["exact_match@1"] == pytest.approx(1 / len(tids))
    assert "pass@1" not in summary["metrics"] and "codebleu" not in summary["metrics"]
    assert summary["isolation"] == "none (no code executed)"
    assert "k=2 > 1 candidates per problem" in capsys.readouterr().err
    results = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert results[0]["reference"] == problems[tids[0]].code and results[0]["matched"] is True


def test_unknown_task_id_names_the_line(tmp_path, capsys):
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"nl": "a", "code": "b", "split": "test"}])
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "jsonl/1", "completion": "b"}, {"task_id": 9}])
    assert eval_cli("--data", data, "--samples", samples, "--out", tmp_path / "out") == 2
    assert "s.jsonl:2 field 'task_id'" in capsys.readouterr().err


@needs_sandbox
def test_rows_with_tests_run_in_the_sandbox(tmp_path):
    pairs = [
        {"nl": "add two numbers", "code": "def add(a, b):\n    return a + b\n", "language": "python",
         "split": "test", "tests": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]},
        {"nl": "negate", "code": "def neg(x):\n    return -x\n", "language": "python", "split": "test"},
    ]  # fmt: skip
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    rows = [
        {"task_id": "jsonl/1", "completion": "def add(a, b):\n    return a + b\n"},
        {"task_id": "jsonl/1", "completion": "def add(a, b):\n    return a - b\n"},
        {"task_id": "jsonl/2", "completion": "def neg(x):\n    return x\n"},
    ]
    samples = write_jsonl(tmp_path / "s.jsonl", rows)
    assert eval_cli("--data", data, "--samples", samples, "--out", tmp_path / "out", "--k", "1") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["metrics"]["pass@1"] == pytest.approx(0.5)  # over the one row with tests
    assert summary["metrics"]["syntax_valid"] == 1.0 and 0 < summary["metrics"]["codebleu"] <= 1
    assert summary["isolation"] == sandbox.required_isolation()
    results = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r.get("passed") for r in results] == [True, False, None]


def test_eval_limit_scores_only_the_generated_sample(tmp_path, capsys):
    from nl2code.prompts import benchmark_prompts

    pairs = [{"nl": f"say {i}", "code": f"echo {i}", "split": "test"} for i in range(30)]
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    drawn = benchmark_prompts("jsonl", str(data), "nl", limit=5, seed=3)
    rows = [{"task_id": p.task_id, "completion": "echo " + p.prompt.split()[1]} for p in drawn]
    samples = write_jsonl(tmp_path / "s.jsonl", rows)
    out = tmp_path / "out"
    assert eval_cli("--data", data, "--samples", samples, "--out", out, "--k", "1", "--limit", "5", "--seed", "3") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["exact_match@1"] == 1.0 and summary["counts"]["problems"] == 5
    assert summary["limit"] == {"n": 5, "seed": 3, "of": 30}
    # without --limit the 25 problems without samples count as wrong
    assert eval_cli("--data", data, "--samples", samples, "--out", out, "--k", "1") == 0
    assert json.loads((out / "summary.json").read_text())["metrics"]["exact_match@1"] == pytest.approx(5 / 30)
