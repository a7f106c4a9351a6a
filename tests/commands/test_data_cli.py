"""``nl2code data stats``: output formats, help text and one-line errors with a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nl2code import cli
from nl2code.data.sources import SOURCES

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def only_data_command(monkeypatch):
    # Build the parser from this command alone so these tests do not depend on other commands.
    monkeypatch.setattr(cli, "COMMANDS", ["data"])


def _bad_mbpp(tmp_path: Path) -> Path:
    good = {"text": "t", "code": "c", "task_id": 1, "test_setup_code": "", "test_list": [],
            "challenge_test_list": []}  # fmt: skip
    bad = dict(good, task_id=2, test_list="assert f()")
    path = tmp_path / "mbpp.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    return path


def test_json_prints_only_counts(shared_data, capsys):
    assert cli.main(["data", "stats", "mbpp", str(shared_data / "mbpp" / "mbpp.jsonl"), "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts == {"prompt": 10, "test": 500, "train": 464} and sum(counts.values()) == 974


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["codefusion-bash", "codefusion/benchmarks/BashBenchmarks.json"], {"train": 10085, "test": 2522}),
        (["nl2bash", "nl2bash"], {"all": 12607}),
        (["conala", "conala"], {"train": 2379, "test": 500}),
    ],
)
def test_json_counts_on_shared_data(shared_data, capsys, args, expected):
    assert cli.main(["data", "stats", args[0], str(shared_data / args[1]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == expected


def test_text_output_reports_drops_and_notes(shared_data, capsys):
    path = shared_data / "codefusion" / "benchmarks" / "PythonBenchmarks.json"
    assert cli.main(["data", "stats", "codefusion-python", str(path), "-o", "null_nl=drop"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "2,300" in out and "477" in out
    assert "79  train: null NL Utterance" in out and "note: test: 23 rows have null NL Utterance" in out


def test_json_mode_sends_drops_to_stderr(tmp_path, capsys):
    path = tmp_path / "BashSnippets.txt"
    path.write_text("ls\n\npwd\n")
    assert cli.main(["data", "stats", "snippets", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"all": 2}
    assert "dropped 1: empty line" in captured.err


def test_humaneval_needs_no_path(capsys):
    assert cli.main(["data", "stats", "humaneval", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"test": 164}


def test_malformed_row_exits_nonzero_naming_the_row(tmp_path, capsys):
    path = _bad_mbpp(tmp_path)
    assert cli.main(["data", "stats", "mbpp", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert lines == [f"nl2code data: error: {path}:2 field 'test_list': expected list, got string"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mbpp"], "source 'mbpp' needs a PATH"),
        (["mbpp", "x.jsonl", "-o", "nope=1"], "source 'mbpp' has no option 'nope'"),
        (["mbpp", "x.jsonl", "-o", "novalue"], "is not KEY=VALUE"),
        (["mbpp", "/nonexistent/mbpp.jsonl"], "/nonexistent/mbpp.jsonl: no such file"),
    ],
)
def test_usage_errors_are_one_line(capsys, args, message):
    assert cli.main(["data", "stats", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err


def test_help_lists_every_source(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "stats", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: nl2code data stats" in out and "--json" in out
    for name in SOURCES:
        assert f"  {name} " in out
    with pytest.raises(SystemExit):
        cli.main(["data", "stats", "no-such-source", "x"])


def test_data_requires_a_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["data"])
    assert e.value.code != 0


def test_subprocess_entry_point(tmp_path):
    # The real entry point (all commands registered), run as `python -m nl2code`.
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = [sys.executable, "-m", "nl2code", "data", "stats", "mbpp", str(_bad_mbpp(tmp_path))]
    bad = subprocess.run(run, capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        f"nl2code data: error: {tmp_path / 'mbpp.jsonl'}:2 field 'test_list': expected list, got string"
    ]
