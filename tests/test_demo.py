"""``nl2code demo``: its pieces (fast), the --quick run with resume, and the full run (slow, < 10 min)."""

from __future__ import annotations

import ast
import dataclasses
import html
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nl2code import cli
from nl2code.demo.pipeline import (
    DemoError,
    DemoSettings,
    Runner,
    Step,
    check_settings,
    evaluations_to_redo,
    model_unavailable,
    sandbox_for_demo,
)
from nl2code.demo.scores import heldout_scores, humaneval_scores, outcome
from nl2code.demo.steps import (
    Context,
    _scale_train,
    demo_config,
    evaluate,
    first_paragraph,
    humaneval_completion,
    write_jsonl,
)

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIGS = REPO / "configs" / "demo"


# -- pieces ---------------------------------------------------------------------------------------


def test_humaneval_completion_renames_and_stays_valid():
    prompt = 'def add(a, b):\n    """Add two numbers."""\n'
    completion = humaneval_completion("def plus(x, y):\n    return x + y\n", "add")
    program = prompt + completion
    ast.parse(program)
    ns: dict = {}
    exec(compile(program, "<test>", "exec"), ns)  # trusted text written here, not model output
    assert ns["add"](2, 3) == 5
    # only the first definition is renamed; text without a def passes through unchanged
    assert humaneval_completion("async def g():\n    def h(): pass\n", "f") == "\nasync def f():\n    def h(): pass\n"
    assert humaneval_completion("return 1", "f") == "\nreturn 1"


def test_first_paragraph_stops_at_blank_line_and_doctest():
    doc = "Check if two numbers\nare close.\n>>> close(1, 2)\nFalse\n\nMore text."
    assert first_paragraph(doc) == "Check if two numbers are close."
    assert first_paragraph("  One line.  ") == "One line."


def test_scale_train_keeps_enabled_counts_positive():
    out = _scale_train({"max_steps": 250, "eval_every": 100, "sample_every": 0, "log_every": 5, "lr": 1e-3}, 0.1)
    assert out == {"max_steps": 25, "eval_every": 10, "sample_every": 0, "log_every": 1, "lr": 1e-3}


def test_demo_config_points_at_shared_tokenizer_and_scales_stages(tmp_path):
    ctx = Context(tmp_path, DemoSettings.quick(), DEMO_CONFIGS, print)
    raw = demo_config(ctx, "codegen")
    assert raw["tokenizer"] == {"path": str((tmp_path / "tokenizer").resolve())}
    assert raw["data"]["options"]["max_functions"] == 1500
    full = demo_config(Context(tmp_path, DemoSettings(), DEMO_CONFIGS, print), "codegen")
    for quick_stage, full_stage in zip(raw["stages"], full["stages"], strict=True):
        assert quick_stage["train"]["max_steps"] < full_stage["train"]["max_steps"]


def test_settings_must_match_to_resume(tmp_path):
    check_settings(tmp_path, DemoSettings.quick())
    check_settings(tmp_path, DemoSettings.quick())  # same settings: fine
    check_settings(tmp_path, dataclasses.replace(DemoSettings.quick(), models=("codegen",)))  # models may change
    with pytest.raises(DemoError, match="other settings"):
        check_settings(tmp_path, DemoSettings())


def test_settings_validation():
    with pytest.raises(ValueError):
        DemoSettings(n=2, ks=(1, 3))
    with pytest.raises(ValueError):
        DemoSettings(models=())


def test_unavailable_model_is_explained(tmp_path):
    assert "no training config" in model_unavailable("nothing", tmp_path)
    (tmp_path / "bad.yaml").write_text("model: {kind: no-such-kind}\n")
    assert "does not load" in model_unavailable("bad", tmp_path)
    assert model_unavailable("codegen", DEMO_CONFIGS) is None


def test_heldout_scores_gold_and_junk():
    refs = {"a": "def f(x):\n    return x + 1\n", "b": "def g():\n    pass\n"}
    gold = heldout_scores(refs, {t: [r, "junk ("] for t, r in refs.items()}, n=2)
    assert gold["at_k"]["exact_match"] == [1.0, 1.0]
    assert gold["at_k"]["syntax_valid"] == [1.0, 1.0]
    assert gold["syntax_valid"] == 0.5 and gold["bleu"] > 50 and gold["codebleu"] > 0.5
    junk = heldout_scores(refs, {"a": ["junk (", "def f(x):\n    return x + 1\n"]}, n=2)
    assert junk["at_k"]["exact_match"] == [0.0, 0.5]  # "b" has no candidates and counts as wrong
    assert junk["at_k"]["best_bleu"][0] < junk["at_k"]["best_bleu"][1]
    assert set(junk["diversity"]) >= {"distinct_1", "distinct_2", "edit_distance"}


def test_humaneval_scores_pass_at_k():
    rows = [
        {"task_id": "t1", "passed": True, "status": "ok"},
        {"task_id": "t1", "passed": False, "status": "ok", "reason": "exited before the tests completed"},
        {"task_id": "t2", "passed": False, "status": "error", "reason": "error: NameError: name 'x'"},
        {"task_id": "t2", "passed": False, "status": "timeout", "reason": ""},
    ]
    s = humaneval_scores(rows, 2)
    assert s["at_k"]["pass"] == [0.25, 0.5] and s["solved"] == 1 and s["problems"] == 2
    assert outcome(rows[2]) == "error: NameError" and outcome(rows[3]) == "timeout" and outcome(rows[0]) == "passed"


def test_children_train_side_by_side_and_failures_are_reported(tmp_path):
    import yaml

    from nl2code.demo.parallel import ChildJob, run_children, total_steps, train_one, training_progress

    raw = yaml.safe_load((REPO / "configs" / "smoke" / "codegen.yaml").read_text())
    raw["data"]["options"] = {"max_functions": 200}
    raw["train"].update(max_steps=6, eval_every=0, sample_every=0, ckpt_every=6, log_every=3, tensorboard=False)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(raw))
    assert total_steps(raw) == 6
    assert total_steps({**raw, "stages": [{"name": "a", "train": {"max_steps": 4}}, {"name": "b"}]}) == 10

    def job(name: str, config: Path) -> ChildJob:
        run = tmp_path / name
        return ChildJob(name, train_one, (config, run), run / "train.log", 6, lambda: training_progress(run))

    seconds = run_children([job("one", good), job("two", good)], "train", print, poll_s=0.2)
    assert set(seconds) == {"one", "two"}
    for name in ("one", "two"):
        assert (tmp_path / name / "model.safetensors").is_file()
        assert training_progress(tmp_path / name)[0] == 6
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {kind: codegen, d_model: -1}\nobjective: {kind: causal_lm}\n")
    with pytest.raises(DemoError, match=r"train broken failed \(exit 2\)(.|\n)*d_model"):
        run_children([job("broken", bad), job("one", good)], "train", print, poll_s=0.2)


# -- without the required isolation, HumanEval is not executed, loudly ----------------------------


def test_demo_sandbox_without_bwrap_is_a_loud_skip_or_a_refusal(no_bwrap):
    from nl2code.eval import sandbox

    said: list[str] = []
    label, why = sandbox_for_demo(None, said.append)
    assert label is None and "bubblewrap is not installed (apt-get install bubblewrap)" in why
    assert said == [f"note: HumanEval pass@k will not run: {why}"]
    with pytest.raises(DemoError, match="isolation bwrap is not available here: bubblewrap is not installed"):
        sandbox_for_demo("bwrap", said.append)  # a named level that is missing is an error
    weaker = [lv for lv in sandbox.available_levels() if lv != "bwrap"]
    if weaker:  # the explicit opt-in runs HumanEval, announced as weaker
        label, why = sandbox_for_demo(weaker[0], said.append)
        assert label == sandbox.require(weaker[0]) and not why
        assert said[-1].startswith(f"warning: isolation {label}")


def _scored_run(tmp_path: Path, marker: Path) -> Context:
    """A run directory with held-out and HumanEval samples (one writing ``marker`` when executed)."""
    out = tmp_path / "demo"
    ref = {"task_id": "m/f", "nl": "Add one.", "code": "def f(x):\n    return x + 1\n"}
    write_jsonl(out / "corpus" / "heldout.jsonl", [ref])
    write_jsonl(
        out / "samples" / "codegen" / "heldout.jsonl",
        [{"task_id": "m/f", "rank": j, "completion": ref["code"], "score": 0.0} for j in range(3)],
    )
    evil = f"\n    open({str(marker)!r}, 'w').write('ran')\n"
    write_jsonl(
        out / "samples" / "codegen" / "humaneval.jsonl",
        [{"task_id": "HumanEval/0", "rank": j, "completion": evil, "score": 0.0} for j in range(3)],
    )
    return Context(out, DemoSettings.quick(), DEMO_CONFIGS, print)


def test_evaluate_without_isolation_skips_humaneval_and_the_report_says_so(tmp_path):
    from nl2code.demo.report import collect, summary_table, write_report

    marker = tmp_path / "ran.txt"
    ctx = _scored_run(tmp_path, marker)
    why = "refusing to run generated code: it needs isolation bwrap+uid, but bubblewrap is not installed"
    ctx = dataclasses.replace(ctx, humaneval_skip=why)
    info = evaluate(ctx, "codegen")
    assert info["humaneval_skipped"] == why and info["heldout_problems"] == 1
    assert not marker.exists() and not (ctx.out / "eval" / "codegen" / "humaneval").exists()
    metrics = json.loads((ctx.out / "eval" / "codegen" / "metrics.json").read_text())
    assert metrics["humaneval"]["skipped"] == why and metrics["heldout"]["at_k"]["exact_match"][0] == 1.0
    data = collect(ctx.out, ["codegen"], {}, ctx.settings)
    table = summary_table(data)
    assert f"HumanEval pass@k not run: {why}" in table
    page = write_report(ctx.out / "report", data).read_text(encoding="utf-8")
    assert "HumanEval pass@k not run:</b> " + html.escape(why) in page
    # the step is redone once HumanEval may run
    runner = Runner(ctx.out, print)
    runner.marker("evaluate:codegen").write_text(json.dumps({"seconds": 1.0, **info}))
    steps = [Step("evaluate:codegen", "evaluate", dict), Step("report", "report", dict)]
    assert evaluations_to_redo(runner, steps) == ["evaluate:codegen"]
    runner.marker("evaluate:codegen").write_text(json.dumps({"seconds": 1.0, "humaneval_problems": 1}))
    assert evaluations_to_redo(runner, steps) == []


# -- runs -----------------------------------------------------------------------------------------


def _check_report(out: Path) -> str:
    report = out / "report" / "index.html"
    assert report.is_file()
    page = report.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") >= 3  # loss, metrics, top-k
    for png in ("loss.png", "metrics.png", "topk.png"):
        assert (out / "report" / png).stat().st_size > 1000
    table = (out / "report" / "summary.md").read_text(encoding="utf-8")
    assert "| codegen |" in table
    metrics = json.loads((out / "eval" / "codegen" / "metrics.json").read_text())
    # The models-vs-baselines table: the same next-word rows for the AR model and both baselines.
    for system in ("constant", "retrieval", "codegen"):
        assert re.search(rf"^\| {system} \| \d\.\d{{3}} \| \d\.\d{{3}} \|", table, re.M), table
    rows = len((out / "corpus" / "nextword.jsonl").read_text().splitlines())
    baselines = json.loads((out / "eval" / "baselines" / "metrics.json").read_text())
    assert rows > 0 and metrics["nextword"]["rows"] == rows == baselines["retrieval"]["nextword"]["rows"]
    assert "vs a constant answer and retrieval" in page and "true next word" in page
    from nl2code.eval import sandbox

    if sandbox.isolation_problem():  # no bubblewrap here: HumanEval is not executed, and that is said
        assert metrics["humaneval"]["skipped"] == sandbox.isolation_problem()
        assert "HumanEval pass@k not run: " in table and "HumanEval pass@k not run:" in page
        assert not (out / "eval" / "codegen" / "humaneval").exists()
        return table
    assert metrics["humaneval"]["problems"] > 0 and 0.0 <= metrics["humaneval"]["at_k"]["pass"][0] <= 1.0
    assert metrics["humaneval"]["isolation"] == sandbox.required_isolation()
    assert (out / "eval" / "codegen" / "humaneval" / "summary.json").is_file()
    return table


def test_quick_demo_runs_and_resumes(tmp_path, capsys):
    """The --quick demo with the AR model alone (the default suite's end-to-end check; both models
    run in the slow tests below)."""
    out = tmp_path / "demo"
    start = time.monotonic()
    assert cli.main(["demo", "--quick", "--models", "codegen", "--out", str(out)]) == 0
    first = time.monotonic() - start
    _check_report(out)
    printed = capsys.readouterr().out
    assert "| model |" in printed  # the summary table is printed
    markers = {p.name: p.stat().st_mtime for p in (out / "steps").glob("*.json")}
    assert {
        "corpus.json",
        "tokenizer.json",
        "baselines.json",
        "train-codegen.json",
        "generate-codegen.json",
        "evaluate-codegen.json",
        "report.json",
    } <= set(markers)

    # A second run resumes: every finished step is skipped, only the report is rewritten.
    start = time.monotonic()
    assert cli.main(["demo", "--quick", "--models", "codegen", "--out", str(out)]) == 0
    assert time.monotonic() - start < max(20.0, first / 2)
    printed = capsys.readouterr().out
    assert re.search(r"train codegen.*: done before", printed)
    for name, mtime in markers.items():
        if name != "report.json":
            assert (out / "steps" / name).stat().st_mtime == mtime

    # Other settings in the same directory are refused instead of mixing two runs.
    assert cli.main(["demo", "--out", str(out)]) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_demo_with_both_models_added_one_at_a_time(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--quick", "--models", "codegen", "--out", str(out)]) == 0
    codegen_weights = (out / "codegen" / "model.safetensors").read_bytes()
    codegen_log = (out / "codegen" / "metrics.jsonl").read_text()
    # Adding a model resumes the run: codefusion is trained, codegen is not trained again.
    assert cli.main(["demo", "--quick", "--out", str(out)]) == 0
    assert (out / "codegen" / "model.safetensors").read_bytes() == codegen_weights
    assert (out / "codegen" / "metrics.jsonl").read_text() == codegen_log
    table = _check_report(out)
    assert "| codefusion |" in table, table
    for name in ("codegen", "codefusion"):
        assert (out / "samples" / name / "humaneval.jsonl").is_file()
        assert (out / name / "train.log").is_file()  # trained side by side in child processes


@pytest.mark.slow
def test_full_demo_under_ten_minutes(tmp_path):
    """The README's main command, as a user runs it (``make demo`` = ``nl2code demo``)."""
    out = tmp_path / "demo"
    start = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "nl2code", "demo", "--out", str(out)], capture_output=True, text=True, timeout=900
    )
    elapsed = time.monotonic() - start
    assert r.returncode == 0, r.stderr[-3000:]
    table = _check_report(out)
    assert "| codefusion |" in table, table
    print(f"full demo: {elapsed:.0f} s\n{table}")
    # The acceptance: the trained AR model beats both baselines on the next-word rows.
    baselines = json.loads((out / "eval" / "baselines" / "metrics.json").read_text())
    model = json.loads((out / "eval" / "codegen" / "metrics.json").read_text())["nextword"]
    for name in ("constant", "retrieval"):
        for metric in ("exact_match", "edit_similarity"):
            assert model[metric] > baselines[name]["nextword"][metric], (name, metric, table)
    assert elapsed < 600, f"the demo took {elapsed:.0f} s (budget 600 s on 2 cores)"
