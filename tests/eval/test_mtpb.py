"""MTPB: history assembly, truncation, last-print capture and check_equivalence, on a hand-made fixture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from exec_fixtures import private_cache  # noqa: F401

from nl2code.data.records import DataError
from nl2code.eval import sandbox
from nl2code.eval.harness import run_eval
from nl2code.eval.tasks import EvalContext
from nl2code.eval.tasks.mtpb import PREFIX, TASK, build_history, truncate

# Generated code runs only at the required isolation: without it these tests have nothing to run.
pytestmark = pytest.mark.skipif(bool(sandbox.isolation_problem()), reason=sandbox.isolation_problem() or "-")

FIXTURE = Path(__file__).parent / "fixtures" / "mtpb_mini.jsonl"
CTX = EvalContext(ks=[1], workers=2, progress=False)


def df(values) -> str:
    return f"import pandas as pd\ndf = pd.DataFrame({{'v': {values!r}}})\n"


# problem id -> (correct completions for inputs, a wrong variant)
RIGHT = {
    1: lambda i: [f'my_string = "{i["A"]}"\n', "lowered = my_string.lower()\n", "print(lowered)\n"],
    # last turn is a bare expression: rewritten to print(); ndarray -> list
    2: lambda i: [f"arr = np.array([{i['a']}, {i['b']}, {i['c']}])\n", "cumsum = np.cumsum(arr)\n", "cumsum\n"],
    3: lambda i: [df(i["values"]), "mean = df['v'].mean()\n", "print(mean)\n"],  # numpy float -> float
    4: lambda i: [df(i["values"]), "print(df['v'] * 2)\n"],  # Series -> allclose against the list
    5: lambda i: [f"n = {i['n']}\n", "print(n % 2 == 0)\n"],  # bool gold
    6: lambda i: [f"s = '{i['s']}'\n", "pairs = [(c, k) for k, c in enumerate(s)]\n", "print(pairs)\n"],  # tuples
}
WRONG = {
    1: lambda i: [f'my_string = "{i["A"]}"\n', "lowered = my_string.upper()\n", "print(lowered)\n"],
    2: lambda i: [f"arr = np.array([{i['a']}, {i['b']}, {i['c']}])\n", "cumsum = arr.sum()\n", "cumsum\n"],
    3: lambda i: [df(i["values"]), "mean = df['v'].sum() + 1\n", "print(mean)\n"],
    4: lambda i: [df(i["values"]), "print(df['v'] * 3 + 1)\n"],
    5: lambda i: [f"n = {i['n']}\n", "print('yes' if n % 2 == 0 else 'no')\n"],  # str vs bool: compared as str
    6: lambda i: [f"s = '{i['s']}'\n", "pairs = [(k, c) for k, c in enumerate(s)]\n", "print(pairs)\n"],
}


@pytest.fixture(scope="module")
def problems():
    return TASK.load_problems(str(FIXTURE))


def test_truncate_follows_the_reference_rules():
    assert truncate("\nif a:\n    r = 1\nelse:\n    r = 2\n\n\n\n#") == "\nif a:\n    r = 1\nelse:\n    r = 2"
    assert truncate("print(1)\nx = 2\nprint(x)\n") == "print(1)\nx = 2\n"  # second top-level print
    assert truncate("def f():\n    pass\ndef g():\n    pass\n") == "def f():\n    pass\n"
    assert truncate("x = 1<|endoftext|>junk") == "x = 1"
    assert truncate("x = 1\n# next turn\ny = 2") == "x = 1\n"
    assert truncate("x = 1\n'''doc'''") == "x = 1\n"
    assert truncate("    print(1)\n    print(2)\n") == "    print(1)\n    print(2)\n"  # only top level


def test_history_has_prefix_prompt_comments_and_truncated_turns(problems):
    h = build_history(problems["mtpb/1"], 2, ['my_string = "MiXeD cAsE"\n\n\n# junk', "lowered = 1", "print(2)"])
    assert h == (
        PREFIX + '# Assign the string "MiXeD cAsE" to a variable named "my_string".\n'
        'my_string = "MiXeD cAsE"\n\n'
        '# Lowercase the string "my_string" and store it in "lowered".\nlowered = 1\n\n'
        '# Print the variable "lowered".\nprint(2)\n\n'
    )


def test_correct_and_wrong_samples(problems, tmp_path):
    rows = []
    for tid, p in problems.items():
        pid = int(tid.split("/")[1])
        for t, inputs in enumerate(p.extras["inputs"]):
            rows.append({"task_id": tid, "test_case": t, "completions": RIGHT[pid](inputs)})
        for t in (0, 1):
            rows.append({"task_id": pid, "test_case": t, "completions": WRONG[pid](p.extras["inputs"][t])})
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = run_eval("mtpb", samples, tmp_path / "out", str(FIXTURE), CTX)
    results = [json.loads(ln) for ln in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    wrong = [r for r in results if r["rank"] == 1]
    right = [r for r in results if r["rank"] == 0]
    assert all(r["passed"] for r in right), [r for r in right if not r["passed"]]
    assert not any(r["passed"] for r in wrong), [r for r in wrong if r["passed"]]
    assert summary["metrics"]["pass_rate"] == pytest.approx(30 / 42)
    # 18 (problem, case) units with one right sample; 12 with one right and one wrong
    assert summary["metrics"]["pass@1"] == pytest.approx((18 * 1.0 + 12 * 0.5) / 30)
    assert summary["isolation"] and summary["details"]["test_cases_without_samples"] == 0


def test_reference_quirks(problems):
    """An exception after the last print is ignored; a second top-level print is truncated away;
    nothing printed fails; assignment as last statement has its value printed."""
    inputs = problems["mtpb/5"].extras["inputs"][0]  # n = 2 -> True
    raw = [
        (
            1,
            {
                "task_id": "mtpb/5",
                "test_case": 0,
                "completions": [f"n = {inputs['n']}\n", "print(n % 2 == 0)\nraise RuntimeError('x')\n"],
            },
        ),
        (2, {"task_id": "mtpb/5", "test_case": 0, "completions": ["n = 2\n", "print(True)\nprint(False)\n"]}),
        (3, {"task_id": "mtpb/5", "test_case": 0, "completions": ["n = 2\n", "even = n % 2 == 0\n"]}),
        (4, {"task_id": "mtpb/5", "test_case": 0, "completions": ["n = 2\n", "for _ in range(2):\n    pass\n"]}),
    ]
    res = TASK.judge(problems, {}, CTX, raw=raw, samples_path="s.jsonl")
    assert [r["passed"] for r in res.results] == [True, True, True, False]
    assert "nothing was printed" in res.results[3]["reason"]


@pytest.mark.parametrize(
    "row,field",
    [
        ({"task_id": "mtpb/99", "test_case": 0, "completions": []}, "task_id"),
        ({"task_id": "mtpb/5", "test_case": 5, "completions": ["a", "b"]}, "test_case"),
        ({"task_id": "mtpb/5", "test_case": 0, "completions": ["only one turn"]}, "completions"),
        ({"task_id": "mtpb/5", "test_case": 0, "completion": "x"}, "completions"),
    ],
)
def test_bad_rows_name_file_line_and_field(problems, row, field):
    with pytest.raises(DataError) as e:
        TASK.judge(problems, {}, CTX, raw=[(7, row)], samples_path="s.jsonl")
    assert e.value.where == 7 and e.value.field_name == field and "s.jsonl" in str(e.value)


def test_problem_with_more_outputs_than_inputs_evaluates_with_a_warning(tmp_path):
    """The published mtpb.jsonl has a problem with more outputs than inputs: CodeGen pairs them with
    zip, so it has 5 test cases (the sixth output is ignored) and a warning names the problem."""
    lines = FIXTURE.read_text().splitlines()
    odd = json.loads(lines[4])  # mtpb/5 "Is even": 5 inputs, 5 outputs
    odd["outputs"].append(False)
    data = tmp_path / "mtpb.jsonl"
    data.write_text("\n".join([lines[0], json.dumps(odd)]) + "\n")
    rows = [
        {"task_id": "mtpb/5", "test_case": t, "completions": [f"n = {n}\n", "print(n % 2 == 0)\n"]}
        for t, n in enumerate([2, 3, 0, -7, 100])
    ]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.warns(UserWarning, match=r"mtpb/5 \('Is even', line 2\): 5 inputs and 6 outputs.*5 test cases"):
        summary = run_eval("mtpb", samples, tmp_path / "out", str(data), CTX)
    assert summary["metrics"]["pass_rate"] == 1.0
    assert summary["details"]["test_cases"] == 10 and summary["details"]["test_cases_without_samples"] == 5
    bad = [(1, {"task_id": "mtpb/5", "test_case": 5, "completions": ["n = 1\n", "print(n)\n"]})]
    with pytest.warns(UserWarning), pytest.raises(DataError, match="test_case"):  # no sixth test case
        TASK.judge(TASK.load_problems(str(data)), {}, CTX, raw=bad, samples_path="s.jsonl")
