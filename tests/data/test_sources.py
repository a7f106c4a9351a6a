"""Source loaders: exact counts on the shared data, and one-line errors on malformed rows."""

from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path

import pytest

from nl2code.data.records import DataError
from nl2code.data.sources import SOURCES, SourceError, load_source, path_optional, source_options
from nl2code.data.sources import codefusion as cf_module
from nl2code.data.sources.mbpp import mbpp_split

# ---------------------------------------------------------------- shared data: exact counts


@pytest.mark.parametrize(
    ("name", "rel", "expected"),
    [
        ("codefusion-bash", "codefusion/benchmarks/BashBenchmarks.json", {"train": 10085, "test": 2522}),
        ("codefusion-python", "codefusion/benchmarks/PythonBenchmarks.json", {"train": 2379, "test": 500}),
        ("codefusion-cf", "codefusion/benchmarks/CFRuleBenchmarks.json", {"train": 712, "test": 178}),
        ("conala", "conala", {"train": 2379, "test": 500}),
        ("conala", "conala/conala-test.json", {"test": 500}),
        ("nl2bash", "nl2bash", {"all": 12607}),
        ("nl2bash", "nl2bash/all.cm", {"all": 12607}),
        ("mbpp", "mbpp/mbpp.jsonl", {"prompt": 10, "test": 500, "train": 464}),
        ("snippets", "codefusion/pretraining/BashSnippets.txt", {"all": 88512}),
    ],
)
def test_shared_counts(shared_data, name, rel, expected):
    result = load_source(name, shared_data / rel)
    assert result.split_counts() == dict(sorted(expected.items()))
    ids = [r.task_id for r in result.records]
    assert len(set(ids)) == len(ids), "task ids must be unique"


def test_mbpp_total_and_ids(shared_data):
    result = load_source("mbpp", shared_data / "mbpp" / "mbpp.jsonl")
    assert sum(result.split_counts().values()) == 974
    by_id = {r.extras["task_id"]: r for r in result.records}
    assert by_id[11].task_id == "mbpp/11" and by_id[11].split == "test"
    assert by_id[2].split == "prompt" and by_id[974].split == "train"
    assert by_id[11].extras["test_list"] and isinstance(by_id[11].extras["test_setup_code"], str)
    assert "challenge_test_list" in by_id[11].extras
    full = load_source("mbpp", shared_data / "mbpp" / "mbpp.jsonl", validation=True)
    assert full.split_counts() == {"prompt": 10, "test": 500, "train": 374, "validation": 90}


def test_mbpp_split_boundaries():
    assert [mbpp_split(i) for i in (1, 10, 11, 510, 511, 974, 1000)] == [
        "prompt", "prompt", "test", "test", "train", "train", "train"
    ]  # fmt: skip


def test_codefusion_bash_matches_nl2bash(shared_data):
    bench = load_source("codefusion-bash", shared_data / "codefusion" / "benchmarks")
    pairs = {r.task_id.split("/")[1]: r for r in load_source("nl2bash", shared_data / "nl2bash").records}
    first = bench.records[0]
    assert first.task_id == "codefusion-bash/0" and first.extras["id"] == 0
    assert first.code == pairs["0"].code + "\n"  # the benchmark keeps its trailing newlines
    assert all(r.language == "bash" for r in bench.records)


def test_codefusion_python_null_nl(shared_data):
    path = shared_data / "codefusion" / "benchmarks" / "PythonBenchmarks.json"
    filled = load_source("codefusion-python", path)
    assert sum(r.extras.get("nl_source") == "conala-intent" for r in filled.records) == 79 + 23
    assert all(r.nl for r in filled.records)
    assert any("79 filled from CoNaLa" in n for n in filled.notes)
    kept = load_source("codefusion-python", path, null_nl="keep")
    assert sum(r.nl == "" for r in kept.records) == 102
    dropped = load_source("codefusion-python", path, null_nl="drop")
    assert dropped.split_counts() == {"test": 477, "train": 2300}
    assert dropped.dropped == {"train: null NL Utterance": 79, "test: null NL Utterance": 23}
    ids = [r.task_id for r in filled.records]
    assert len(set(ids)) == len(ids) and any(i.endswith("-1") for i in ids)  # repeated question ids


def test_codefusion_cf_tables(shared_data):
    result = load_source("codefusion-cf", shared_data / "codefusion" / "benchmarks" / "CFRuleBenchmarks.json")
    rec = result.records[0]
    assert rec.language == "cf" and rec.extras["table"][0] == ["Index", "Value"]
    full = [r for r in result.split("train")
            if len(r.extras["labels"]) == len(r.extras["table"]) and r.extras["labels"] != [0]]  # fmt: skip
    assert len(full) == 554  # per-row labels (header included); the rest are placeholders
    assert any("test: 60 tables are header-only" in n for n in result.notes)


def test_humaneval_default_path():
    result = load_source("humaneval")
    assert result.split_counts() == {"test": 164}
    first = result.records[0]
    assert first.task_id == "HumanEval/0" and first.extras["entry_point"] == "has_close_elements"
    assert first.nl.startswith("Check if in given list of numbers")
    assert first.code == first.extras["canonical_solution"]
    assert not result.notes  # every prompt's docstring was found (115 has an import before it)
    whole = load_source("humaneval", nl="prompt")
    assert whole.records[0].nl == whole.records[0].extras["prompt"]


def test_humaneval_explicit_gz(tmp_path):
    row = {"task_id": "HumanEval/0", "prompt": "def f():\n    '''Do.'''\n", "entry_point": "f",
           "canonical_solution": "    return 1\n", "test": "assert f() == 1"}  # fmt: skip
    path = tmp_path / "he.jsonl.gz"
    path.write_bytes(gzip.compress((json.dumps(row) + "\n").encode()))
    assert load_source("humaneval", path).records[0].nl == "Do."


# ---------------------------------------------------------------- fixtures: CodeFusion CF


def _write_cf(path: Path, data, labels) -> Path:
    row = {"ID": 1, "NL Utterance": "color it", "Code": "GreaterThan(1)", "Data": data, "Labels": labels}
    path.write_text(json.dumps({"train": [row], "test": []}))
    return path


def test_cf_literal_strings_use_literal_eval(tmp_path, monkeypatch):
    calls = []
    real = ast.literal_eval
    monkeypatch.setattr(cf_module.ast, "literal_eval", lambda s: calls.append(s) or real(s))
    path = _write_cf(tmp_path / "cf.json", "[['Index', 'Value'], [0, None]]", "[0, 1]")
    rec = load_source("codefusion-cf", path).records[0]
    assert rec.extras == {"id": 1, "table": [["Index", "Value"], [0, None]], "labels": [0, 1]}
    assert len(calls) == 2


def test_cf_code_in_data_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = _write_cf(tmp_path / "cf.json", f"__import__('pathlib').Path({str(marker)!r}).touch()", "[0]")
    with pytest.raises(DataError, match=r"train row 0\) field 'Data': not a Python literal"):
        load_source("codefusion-cf", path)
    assert not marker.exists()


def test_cf_labels_must_be_numbers(tmp_path):
    with pytest.raises(DataError, match="field 'Labels'"):
        load_source("codefusion-cf", _write_cf(tmp_path / "cf.json", [["a"]], "['x']"))


def test_codefusion_python_without_conala(tmp_path):
    rows = [{"ID": 5, "NL Utterance": None, "Code": "x"}, {"ID": 5, "NL Utterance": "b", "Code": "y"}]
    path = tmp_path / "PythonBenchmarks.json"
    path.write_text(json.dumps({"train": rows, "test": []}))
    result = load_source("codefusion-python", path)
    assert [r.task_id for r in result.records] == ["codefusion-python/5-0", "codefusion-python/5-1"]
    assert result.records[0].nl == "" and "no CoNaLa file found" in result.notes[0]
    conala = tmp_path / "c"
    conala.mkdir()
    (conala / "conala-train.json").write_text(json.dumps(
        [{"intent": "I", "rewritten_intent": None, "snippet": "x", "question_id": 5}]))  # fmt: skip
    assert load_source("codefusion-python", path, conala_path=str(conala)).records[0].nl == "I"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"train": [{"ID": 1, "NL Utterance": "a"}], "test": []}, "train row 0) field 'Code': missing"),
        (
            {"train": [], "test": [{"ID": 1, "NL Utterance": 3, "Code": "c"}]},
            "test row 0) field 'NL Utterance'",
        ),
        ({"train": []}, "field 'test': missing"),
        ([], "expected an object"),
    ],
)
def test_codefusion_malformed(tmp_path, doc, message):
    path = tmp_path / "BashBenchmarks.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_source("codefusion-bash", path)


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "b.json"
    path.write_text('{"train": [\n  {"ID": 1,,}\n]}')
    with pytest.raises(DataError, match=r"b.json:2: invalid JSON"):
        load_source("codefusion-bash", path)


# ---------------------------------------------------------------- other text formats


def test_snippets_language_and_blank_lines(tmp_path):
    path = tmp_path / "BashSnippets.txt"
    path.write_text("ls -l\n\n  \nls -l\r\npwd\n")
    result = load_source("snippets", path)
    assert [r.code for r in result.records] == ["ls -l", "ls -l", "pwd"]
    assert result.records[0].language == "bash" and result.records[2].task_id == "snippets-bash/5"
    assert result.dropped == {"empty line": 2}
    assert load_source("snippets", path, dedupe=True).dropped == {"empty line": 2, "duplicate line": 1}
    other = tmp_path / "misc.txt"
    other.write_text("x\n")
    with pytest.raises(SourceError, match="language"):
        load_source("snippets", other)
    assert load_source("snippets", other, language="cf").records[0].language == "cf"


def test_nl2bash_mismatch_names_both_files(tmp_path):
    (tmp_path / "all.nl").write_text("a\nb\n")
    (tmp_path / "all.cm").write_text("ls\n")
    with pytest.raises(DataError, match=r"all\.nl / .*all\.cm: line counts differ \(2 vs 1\)"):
        load_source("nl2bash", tmp_path)


def test_conala_fallback_and_bad_row(tmp_path):
    rows = [{"intent": "i", "rewritten_intent": None, "snippet": "s", "question_id": 1}]
    (tmp_path / "conala-train.json").write_text(json.dumps(rows))
    rec = load_source("conala", tmp_path).records[0]
    assert (rec.nl, rec.split, rec.task_id) == ("i", "train", "conala/1")
    rows.append({"intent": "i", "rewritten_intent": "r", "question_id": 2})
    (tmp_path / "conala-train.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"\(row 1\) field 'snippet': missing"):
        load_source("conala", tmp_path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", r"mbpp.jsonl:2: invalid JSON"),
        ("[1, 2]", r"mbpp.jsonl:2: expected a JSON object"),
        ('{"text": "t", "code": "c", "task_id": true}', r"mbpp.jsonl:2 field 'task_id': expected integer"),
        (
            '{"text": "t", "code": "c", "task_id": 1}',
            r"mbpp.jsonl:2 field 'task_id': 1 already used on line 1",
        ),
    ],
)
def test_mbpp_malformed(tmp_path, line, message):
    good = {"text": "t", "code": "c", "task_id": 1, "test_setup_code": "", "test_list": ["assert 1"],
            "challenge_test_list": []}  # fmt: skip
    path = tmp_path / "mbpp.jsonl"
    path.write_text(json.dumps(good) + "\n" + line + "\n")
    with pytest.raises(DataError, match=message):
        load_source("mbpp", path)


# ---------------------------------------------------------------- MTPB


def _mtpb_problem(**changes):
    problem = {
        "id": 3, "name": "Sandwich string", "description": "Append a string in the middle.",
        "category": "string", "prompts": ["Assign the string \"{A}\" to a variable.", "Print it twice."],
        "inputs": [{"A": str(i)} for i in range(5)], "outputs": [str(i) * 2 for i in range(5)],
        "max_gen_length": 128,
    }  # fmt: skip
    problem.update(changes)
    return problem


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_mtpb_fixture(tmp_path):
    path = _write_jsonl(tmp_path / "mtpb.jsonl", [_mtpb_problem(), _mtpb_problem(id="4")])
    result = load_source("mtpb", path)
    assert result.split_counts() == {"test": 2}
    rec = result.records[0]
    assert rec.task_id == "mtpb/3" and rec.nl.startswith("Append") and rec.code == ""
    assert rec.extras["prompts"][0].format(**rec.extras["inputs"][1]) == 'Assign the string "1" to a variable.'
    assert result.records[1].extras["max_gen_length"] == 128


@pytest.mark.parametrize(
    ("changes", "cases", "extra"),
    [
        ({"outputs": [str(i) * 2 for i in range(6)]}, 5, "outputs"),  # as in the published mtpb.jsonl
        ({"inputs": [{"A": str(i)} for i in range(4)]}, 4, "outputs"),
        ({"inputs": [{"A": str(i)} for i in range(7)]}, 5, "inputs"),
    ],
)
def test_mtpb_pairs_inputs_and_outputs_as_the_reference_zip(tmp_path, changes, cases, extra):
    """CodeGen's sampler pairs test cases with zip(inputs, outputs): the extra entries are ignored, and
    the notes and a warning name the problem."""
    path = _write_jsonl(tmp_path / "mtpb.jsonl", [_mtpb_problem(id=1), _mtpb_problem(**changes)])
    with pytest.warns(UserWarning, match=r"mtpb/3 \('Sandwich string', line 2\)"):
        result = load_source("mtpb", path)
    rec = result.records[1]
    assert len(rec.extras["inputs"]) == len(rec.extras["outputs"]) == cases
    assert rec.extras["outputs"] == [str(i) * 2 for i in range(cases)]
    n_in, n_out = len(changes.get("inputs", rec.extras["inputs"])), len(changes.get("outputs", [0] * 5))
    assert result.notes == [
        f"mtpb/3 ('Sandwich string', line 2): {n_in} inputs and {n_out} outputs; paired as CodeGen's sampler "
        f"does (zip): {cases} test cases, the extra {extra} ignored"
    ]
    assert len(result.records[0].extras["inputs"]) == 5


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"inputs": []}, "field 'inputs': empty: no test case"),
        ({"outputs": []}, "field 'outputs': empty: no test case"),
        ({"outputs": 3}, "field 'outputs': expected list"),
        ({"prompts": ["Use {B}."]}, r"field 'prompts\[0\]': placeholder \{B\} not in inputs\[0\]"),
        ({"prompts": ["Use {}."]}, r"field 'prompts\[0\]': bad template"),
        ({"prompts": ["Use {A."]}, r"field 'prompts\[0\]': bad template"),
        ({"inputs": [{"A": "x"}] * 4 + [[1]]}, r"field 'inputs\[4\]': expected object"),
        ({"category": None}, "field 'category': expected string, got null"),
        ({"id": "three"}, "field 'id': expected an integer id"),
        ({"max_gen_length": 0}, "field 'max_gen_length': must be >= 1"),
    ],
)
def test_mtpb_malformed(tmp_path, changes, message):
    path = _write_jsonl(tmp_path / "mtpb.jsonl", [_mtpb_problem(id=1), _mtpb_problem(**changes)])
    with pytest.raises(DataError, match=r"mtpb.jsonl:2 " + message):
        load_source("mtpb", path)


# ---------------------------------------------------------------- registry


def test_registry_and_options():
    assert set(SOURCES) == {
        "codefusion-bash", "codefusion-python", "codefusion-cf", "snippets", "conala", "nl2bash",
        "mbpp", "humaneval", "mtpb", "xlcost", "pysource", "jsonl", "mixture",
    }  # fmt: skip
    assert [n for n in SOURCES if path_optional(n)] == ["humaneval", "pysource", "mixture"]
    assert source_options("codefusion-python") == {"null_nl": "fill", "conala_path": None}
    with pytest.raises(SourceError, match="unknown source"):
        load_source("nope", "x")
    with pytest.raises(SourceError, match="no option 'bogus'"):
        load_source("mbpp", "x", bogus=1)
    with pytest.raises(SourceError, match="needs a PATH"):
        load_source("mbpp")
    with pytest.raises(SourceError, match="expects bool"):
        load_source("mbpp", "x", validation="yes")
    with pytest.raises(SourceError, match="null_nl"):
        load_source("codefusion-python", "x.json", null_nl="maybe")
    with pytest.raises(DataError, match="no such file"):
        load_source("mbpp", "/nonexistent/mbpp.jsonl")
