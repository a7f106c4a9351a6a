"""The text-metric tasks: NL2Bash, CodeFusion Bash/CF/Python and CoNaLa through the task interface."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from nl2code.data.records import Record
from nl2code.eval.tasks import EvalContext, get_task

CTX = EvalContext(ks=[1, 3], workers=1, progress=False)


def rec(tid: str, nl: str, code: str, language: str, **extras) -> Record:
    return Record(tid, "test", nl, code, language, extras)


def test_bash_task_topk_grouping_and_nlc2cmd():
    task = get_task("codefusion-bash")
    problems = {
        "codefusion-bash/1": rec("codefusion-bash/1", "list files", "ls -la /tmp\n", "bash"),
        "codefusion-bash/2": rec("codefusion-bash/2", "list files", "ls -1\n", "bash"),  # same NL: 2 golds
        "codefusion-bash/3": rec("codefusion-bash/3", "find txt", "find . -name '*.txt'\n", "bash"),
        "codefusion-bash/4": rec("codefusion-bash/4", "count", "wc -l f\n", "bash"),
    }
    samples = {
        "codefusion-bash/1": ["ls -1", "ls"],  # matches the other gold of the same NL
        "codefusion-bash/2": ["ls -al /var"],
        "codefusion-bash/3": ['find . -name "*.py', "find /x -name '*.c'", "ls"],  # first does not parse
    }
    r = task.judge(problems, samples, CTX)
    assert r.metrics["template_match@1"] == pytest.approx(2 / 4)
    assert r.metrics["template_match@3"] == pytest.approx(3 / 4)
    assert r.metrics["command_match@1"] == pytest.approx(1 / 4)  # "ls -1" is verbatim a gold
    assert r.metrics["syntax_valid"] == pytest.approx(5 / 6)
    # per NL: 1 -> 1.0, 2 -> 1.0, 3 -> max(-1, 1.0 (find -name), -1) = 1.0 with 5 candidates, 4 -> -1
    assert r.metrics["nlc2cmd"] == pytest.approx((1 + 1 + 1 - 1) / 4)
    assert r.metrics["nlc2cmd@1"] == pytest.approx((1 + 1 - 1 - 1) / 4)
    # command match score: 1 -> "ls -1" is a gold (1.0); 2 -> 1.0; 3 -> the unparsed first candidate is a
    # bag of its words {find, ., -name, "*.py} sharing "find" with {find, -name:Regex}: 1 / (2 sqrt 2),
    # then 1.0; 4 -> 0 (no candidates)
    assert r.metrics["cms@1"] == pytest.approx((1 + 1 + 1 / (2 * 2**0.5)) / 4)
    assert r.metrics["cms@3"] == pytest.approx(3 / 4)
    assert [row["cms"] for row in r.results if row["task_id"] == "codefusion-bash/1"] == pytest.approx([1, 2**-0.5])
    assert r.extra["problems_without_samples"] == 1 and r.extra["problems_with_several_golds"] == 2
    assert r.extra["bash_group"] == "exact"
    assert {"diversity_distinct_1", "diversity_edit_distance"} <= set(r.metrics)
    assert [row["reason"] for row in r.results if row["task_id"] == "codefusion-bash/3"][0] == "does not parse"
    assert task.normalize_task_id(17) == "codefusion-bash/17"


def test_bash_task_groups_golds_by_normalised_description():
    task = get_task("codefusion-bash")
    problems = {
        "codefusion-bash/1": rec("codefusion-bash/1", "List all the files.", "ls -a\n", "bash"),
        "codefusion-bash/2": rec("codefusion-bash/2", "list all file", "ls -l\n", "bash"),
        "codefusion-bash/3": rec("codefusion-bash/3", "To count lines (fast)", "wc -l f\n", "bash"),
    }
    samples = {"codefusion-bash/1": ["ls -l"], "codefusion-bash/2": ["ls -a"], "codefusion-bash/3": ["wc -l g"]}
    exact = task.judge(problems, samples, CTX)
    assert exact.metrics["template_match@1"] == pytest.approx(1 / 3)
    assert exact.metrics["cms@1"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    normalized = task.judge(problems, samples, replace(CTX, bash_group="normalized"))
    assert normalized.metrics["template_match@1"] == 1.0 and normalized.metrics["cms@1"] == 1.0
    assert normalized.extra["bash_group"] == "normalized" and normalized.extra["problems_with_several_golds"] == 2
    with pytest.raises(ValueError, match="bash_group"):
        task.judge(problems, samples, replace(CTX, bash_group="fuzzy"))


def test_nl_key():
    from nl2code.eval.tasks.nl2bash import nl_key

    assert nl_key("Find all *.txt files.") == nl_key("find all *.txt file") == "find all *.txt fil"
    assert nl_key('To delete the files named "A b" (recursively)') == 'delet fil nam "A b"'
    assert nl_key("Search files modified two days ago, and print them") == "search fil modify 2 day ago and print them"
    assert nl_key("Recursively finds directories") == nl_key("recursive find directory")
    assert nl_key("list files") != nl_key("list directories")


def test_cf_task_execution_match():
    task = get_task("codefusion-cf")
    table = [["Index", "Value"], [0, "10"], [1, "30"], [2, "50"]]
    problems = {
        "codefusion-cf/1": rec("codefusion-cf/1", "over 20", "GreaterThan(20)", "cf", table=table, labels=[0]),
        "codefusion-cf/2": rec("codefusion-cf/2", "?", "$A2=$A3", "cf", table=table, labels=[0]),
        "codefusion-cf/3": rec("codefusion-cf/3", "bars", "DataBar()", "cf", table=[["Value"]], labels=[0]),
    }
    samples = {
        "codefusion-cf/1": ["Top(2)", "GreaterThan(25)"],  # same rows as the gold, different text
        "codefusion-cf/2": ["$A2=$A3"],  # gold not executable: exact match
        "codefusion-cf/3": ["ColorScale()"],  # header-only table, but a different kind of formatting
    }
    r = task.judge(problems, samples, CTX)
    assert r.metrics["execution_match@1"] == pytest.approx(2 / 3)
    assert r.metrics["execution_match_nonempty@1"] == 1.0
    assert r.metrics["exact_match@3"] == pytest.approx(1 / 3)
    assert r.metrics["syntax_valid"] == pytest.approx(3 / 4)
    assert r.extra["gold_not_executable"] == 1 and r.extra["header_only_tables"] == 1
    assert r.results[0]["rows"] == [1, 2] and r.results[0]["matched"]


def test_python_task_bleu_exact_codebleu():
    task = get_task("conala")
    problems = {
        "conala/1": rec("conala/1", "join", "os.path.join(a, b)", "python"),
        "conala/2": rec("conala/2", "sort", "sorted(x, key=lambda i: i[1])", "python"),
    }
    samples = {"conala/1": ["os.path.join(a,b)"], "conala/2": ["sorted(x)", "sorted(x, key=lambda i: i[1])"]}
    r = task.judge(problems, samples, CTX)
    assert r.metrics["exact_match@1"] == 0.5 and r.metrics["exact_match@3"] == 1.0
    assert 0 < r.metrics["bleu"] < 100
    assert r.metrics["syntax_valid"] == 1.0
    assert {"codebleu", "codebleu_syntax", "codebleu_dataflow", "codebleu_dataflow_floor"} <= set(r.metrics)
    assert "codebertscore" in r.extra  # skipped without a local encoder


def test_missing_data_path_is_a_user_error():
    from nl2code.cli import CLIError

    for name in ("nl2bash", "codefusion-bash", "codefusion-cf", "codefusion-python", "conala"):
        with pytest.raises(CLIError, match="--data"):
            get_task(name).load_problems(None)


@pytest.mark.parametrize(
    ("task", "data", "n", "metric"),
    [
        ("codefusion-cf", "codefusion/benchmarks/CFRuleBenchmarks.json", 178, "execution_match@1"),
        ("codefusion-bash", "codefusion/benchmarks/BashBenchmarks.json", 2522, "template_match@1"),
        ("conala", "conala", 500, "exact_match@1"),
        ("codefusion-python", "codefusion/benchmarks/PythonBenchmarks.json", 500, "exact_match@1"),
    ],
)
def test_gold_samples_score_full_marks(shared_data: Path, tmp_path: Path, task: str, data: str, n: int, metric: str):
    from nl2code.eval.harness import evaluate

    path = str(shared_data / data)
    problems = get_task(task).load_problems(path)
    assert len(problems) == n
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"task_id": t, "completion": p.code}) + "\n" for t, p in problems.items()))
    result, summary = evaluate(task, samples, path, EvalContext(ks=[1], workers=1, progress=False))
    assert summary["metrics"][metric] == 1.0
    if task == "codefusion-bash":
        assert summary["metrics"]["cms@1"] == pytest.approx(1.0)
    if task.startswith("codefusion-python") or task == "conala":
        assert summary["metrics"]["bleu"] == pytest.approx(100.0)


def test_cf_task_label_semantics():
    task = get_task("codefusion-cf")
    table = [["Index", "Value"], [0, "10"], [1, "x"], [2, "50"]]
    problems = {"codefusion-cf/1": rec("codefusion-cf/1", "over 20", "GreaterThan(20)", "cf", table=table, labels=[0])}
    samples = {"codefusion-cf/1": ["Top(1)"]}
    assert task.judge(problems, samples, CTX).metrics["execution_match@1"] == 0.0  # Excel: text "x" > 20
    r = task.judge(problems, samples, replace(CTX, cf_semantics="labels"))
    assert r.metrics["execution_match@1"] == 1.0 and r.extra["semantics"] == "labels"
    with pytest.raises(ValueError, match="cf_semantics"):
        task.judge(problems, samples, replace(CTX, cf_semantics="lotus"))
