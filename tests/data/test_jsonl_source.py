"""The ``jsonl`` (own data) and ``mixture`` (several sources as one) data sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nl2code.data.records import DataError
from nl2code.data.sources import SourceError, load_source


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_rows_defaults_and_extras(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [
        {"nl": "list files", "code": "ls", "language": "bash", "split": "test", "task_id": 7, "note": "x"},
        {"nl": "add", "code": "a + b"},
        {"nl": "add", "code": "a + b", "task_id": "dup"},
        {"nl": "again", "code": "b + a", "task_id": "dup"},
        {"nl": " ", "code": "x"},
    ])  # fmt: skip
    result = load_source("jsonl", path, language="python", split="train")
    recs = result.records
    assert [r.task_id for r in recs] == ["jsonl/7", "jsonl/2", "jsonl/dup-0", "jsonl/dup-1"]
    assert [(r.split, r.language) for r in recs[:2]] == [("test", "bash"), ("train", "python")]
    assert recs[0].extras == {"note": "x", "line": 1} and dict(result.dropped) == {"empty nl or code": 1}


@pytest.mark.parametrize(("row", "message"), [
    ({"code": "ls", "language": "bash"}, "mine.jsonl:1 field 'nl': missing"),
    ({"nl": "x", "code": 3, "language": "bash"}, "mine.jsonl:1 field 'code': expected string, got integer"),
    ({"nl": "x", "code": "ls", "tests": "assert f()"}, "mine.jsonl:1 field 'tests': expected list"),
    ({"nl": "x", "code": "ls", "language": "bash", "task_id": [1]}, "field 'task_id': expected string or integer"),
])  # fmt: skip
def test_jsonl_errors_name_line_and_field(tmp_path, row, message):
    with pytest.raises(DataError, match="mine.jsonl") as e:
        load_source("jsonl", write_jsonl(tmp_path / "mine.jsonl", [row]))
    assert message in str(e.value)


def test_mixture_keeps_each_sources_records(tmp_path):
    py = write_jsonl(tmp_path / "py.jsonl", [{"nl": "add", "code": "a + b", "task_id": "p1"}])
    sh = write_jsonl(tmp_path / "sh.jsonl", [{"nl": "list", "code": "ls", "task_id": "s1", "split": "test"},
                                            {"nl": "", "code": "pwd"}])
    parts = [{"source": "jsonl", "path": str(py), "options": {"language": "python", "split": "train"}},
             {"source": "jsonl", "path": str(sh), "options": {"language": "bash"}}]
    result = load_source("mixture", parts=parts)
    assert [(r.task_id, r.language, r.split) for r in result.records] == [
        ("jsonl/p1", "python", "train"), ("jsonl/s1", "bash", "test")]
    assert dict(result.dropped) == {"jsonl: empty nl or code": 1}
    assert "jsonl: 1 records (bash 1)" in result.notes


@pytest.mark.parametrize(("parts", "message"), [
    ([], "needs the option 'parts'"),
    (["conala"], "parts[0]: expected a mapping"),
    ([{"source": "mixture"}], "parts[0].source: expected the name of a (non-mixture) source"),
    ([{"source": "jsonl", "paths": "x"}], "parts[0]: unknown key 'paths'"),
    ([{"source": "jsonl"}], "parts[0]: source 'jsonl' needs a PATH"),
    ([{"source": "jsonl", "path": "P", "options": {"lang": "x"}}], "parts[0]: source 'jsonl' has no option 'lang'"),
    ([{"source": "jsonl", "path": "P"}, {"source": "jsonl", "path": "P"}], "also comes from parts[0]"),
])  # fmt: skip
def test_mixture_errors_name_the_part(tmp_path, parts, message):
    path = write_jsonl(tmp_path / "a.jsonl", [{"nl": "add", "code": "a + b", "language": "python"}])
    parts = json.loads(json.dumps(parts).replace('"P"', json.dumps(str(path))))
    with pytest.raises(SourceError) as e:
        load_source("mixture", parts=parts)
    assert message in str(e.value)
    with pytest.raises(SourceError, match="takes no PATH"):
        load_source("mixture", path, parts=[{"source": "jsonl", "path": str(path)}])


def test_jsonl_with_only_nl_and_code_gets_a_hash_split_and_says_so(tmp_path):
    rows = [{"nl": f"task {i}", "code": f"x = {i}"} for i in range(200)]
    path = write_jsonl(tmp_path / "mine.jsonl", rows)
    result = load_source("jsonl", path)
    splits = [r.split for r in result.records]
    assert 5 <= splits.count("test") <= 40 and splits.count("train") + splits.count("test") == 200
    assert {r.language for r in result.records} == {"unknown"}
    assert any("assigned by a hash" in n and "train" in n for n in result.notes)
    assert any("no 'language'" in n for n in result.notes)
    # stable: the same rows in another order land on the same side
    again = load_source("jsonl", write_jsonl(tmp_path / "rev.jsonl", rows[::-1]))
    by_text = {r.nl: r.split for r in again.records}
    assert all(by_text[r.nl] == r.split for r in result.records)
    with pytest.raises(SourceError, match="test_fraction"):
        load_source("jsonl", path, test_fraction=1.0)
