"""``nl2code eval``: outputs, summary fields, and bad input (one-line error, exit 2, nothing overwritten)."""

from __future__ import annotations

import json

import pytest
from exec_fixtures import private_cache  # noqa: F401

from nl2code import cli
from nl2code.data.sources import load_source
from nl2code.eval import sandbox

# ``nl2code eval`` refuses before anything else without the required isolation (test_fail_closed.py).
pytestmark = pytest.mark.skipif(bool(sandbox.isolation_problem()), reason=sandbox.isolation_problem() or "-")


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def humaneval():
    return {r.task_id: r for r in load_source("humaneval").records}


def run_cli(*argv) -> int:
    return cli.main(["eval", *map(str, argv), "--no-progress", "--workers", "2"])


def test_writes_results_summary_and_markdown(tmp_path, humaneval, capsys):
    rows = []
    for tid in ("HumanEval/0", "HumanEval/1", "HumanEval/2"):
        rows += [{"task_id": tid, "completion": humaneval[tid].code}, {"task_id": tid, "completion": "    pass\n"}]
    samples = write_jsonl(tmp_path / "samples.jsonl", rows)
    out = tmp_path / "out"
    assert run_cli("humaneval", "--samples", samples, "--out", out, "--k", "1,2") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "humaneval" and summary["samples_file"] == str(samples)
    # 3 problems at 1/2 each, the other 161 without samples count as 0
    assert summary["metrics"]["pass@1"] == pytest.approx(1.5 / 164)
    assert summary["metrics"]["pass@2"] == pytest.approx(3 / 164)
    assert summary["isolation"] == sandbox.required_isolation()
    printed = capsys.readouterr()
    assert printed.err.splitlines()[0] == f"isolation: {summary['isolation']}"  # announced first
    assert summary["details"]["problems_without_samples"] == 161
    assert summary["elapsed_s"] > 0 and summary["settings"]["workers"] == 2
    results = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["task_id"], r["rank"], r["passed"]) for r in results][:2] == [
        ("HumanEval/0", 0, True),
        ("HumanEval/0", 1, False),
    ]
    md = (out / "summary.md").read_text()
    assert "| pass@1 | 0.0091 |" in md
    assert json.loads(printed.out)["metrics"]["pass@1"] == pytest.approx(1.5 / 164)
    assert json.loads(printed.out)["isolation"] == summary["isolation"]


@pytest.mark.parametrize(
    "lines,where",
    [
        (['{"task_id": "HumanEval/0", "completion": "    pass"}', "{not json"], ":2: invalid JSON"),
        (['{"task_id": "HumanEval/0"}'], ":1 field 'completion': missing"),
        (['{"task_id": "HumanEval/0", "completion": 3}'], ":1 field 'completion': expected a string"),
        (['{"completion": "x"}'], ":1 field 'task_id': missing"),
        (["", '{"task_id": "HumanEval/999", "completion": "x"}'], ":2 field 'task_id': unknown task id"),
        (["[1, 2]"], ":1: expected a JSON object"),
        ([""], "no samples"),
    ],
)
def test_bad_samples_fail_in_one_line_and_leave_outputs_alone(tmp_path, capsys, lines, where):
    samples = write_jsonl(tmp_path / "bad.jsonl", lines)
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("OLD")
    assert run_cli("humaneval", "--samples", samples, "--out", out) == 2
    # one line of error after the isolation announcement
    announced, err = capsys.readouterr().err.strip().split("\n", 1)
    assert announced == f"isolation: {sandbox.required_isolation()}"
    assert len(err.splitlines()) == 1 and str(samples) in err and where in err, err
    assert (out / "summary.json").read_text() == "OLD"
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]


def test_missing_file_bad_k_and_missing_data_are_user_errors(tmp_path, capsys):
    assert run_cli("humaneval", "--samples", tmp_path / "none.jsonl", "--out", tmp_path / "o") == 2
    assert "no such file" in capsys.readouterr().err
    samples = write_jsonl(tmp_path / "s.jsonl", ['{"task_id": "mbpp/11", "completion": "x"}'])
    assert run_cli("humaneval", "--samples", samples, "--out", tmp_path / "o", "--k", "0,x") == 2
    assert "bad --k" in capsys.readouterr().err
    assert run_cli("mbpp", "--samples", samples, "--out", tmp_path / "o") == 2
    assert "--data" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("semantics", ["excel", "labels"])
def test_cf_semantics_option_reaches_the_task(tmp_path, shared_data, capsys, semantics):
    data = shared_data / "codefusion" / "benchmarks" / "CFRuleBenchmarks.json"
    from nl2code.eval.tasks import get_task

    gold = list(get_task("codefusion-cf").load_problems(str(data)).items())[:5]
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": t, "completion": r.code} for t, r in gold])
    out = tmp_path / "out"
    code = run_cli("codefusion-cf", "--samples", samples, "--out", out, "--data", data, "--cf-semantics", semantics)
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["details"]["semantics"] == semantics
    assert "execution_match@1" in summary["metrics"]


@pytest.mark.parametrize("group", ["exact", "normalized"])
def test_bash_reports_cms_and_the_grouping_option_reaches_the_task(tmp_path, shared_data, capsys, group):
    data = shared_data / "codefusion" / "benchmarks" / "BashBenchmarks.json"
    from nl2code.eval.tasks import get_task

    gold = list(get_task("codefusion-bash").load_problems(str(data)).items())[:3]
    rows = [{"task_id": t, "completion": c} for t, r in gold for c in [r.code, "find . -name x", "ls", "ls", "ls"]]
    samples = write_jsonl(tmp_path / "s.jsonl", rows)
    out = tmp_path / "out"
    code = run_cli("codefusion-bash", "--samples", samples, "--out", out, "--data", data, "--bash-group", group)
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["details"]["bash_group"] == group
    # 3 of 2,522 problems answered with their gold first: cms@k = template_match@k = 3 / 2522
    for k in (1, 3, 5):
        assert summary["metrics"][f"cms@{k}"] == pytest.approx(3 / 2522)
    assert "| cms@5 |" in (out / "summary.md").read_text()
    assert all("cms" in json.loads(line) for line in (out / "results.jsonl").read_text().splitlines())
