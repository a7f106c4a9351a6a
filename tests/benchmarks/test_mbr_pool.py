"""benchmarks/mbr_pool.py: MBR over two runs' pooled samples finds what neither run's majority holds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import matched_langs as ml  # noqa: E402
import mbr_pool  # noqa: E402

from nl2code.utils.seed import seeded_subset  # noqa: E402


def _run(monkeypatch, tmp_path, *argv):
    monkeypatch.setattr(sys, "argv", ["mbr_pool.py", "--work-dir", str(tmp_path), "--out", str(tmp_path), *argv])
    mbr_pool.main()
    return json.loads((tmp_path / "pool.json").read_text())["evals"]


def test_pooled_samples_outvote_each_runs_own_majority(shared_data, tmp_path, monkeypatch):
    _, problems, _ = ml.split_data(ml.LANGUAGES["cf"], "paper", tmp_path)
    rows = seeded_subset(list(problems), 12, 3)
    # Each run's majority is a wrong rule; the gold is each run's minority, and the majority once pooled.
    a = {t: [problems[t].code] * 2 + ["Duplicate()"] * 3 for t in rows}
    b = {t: [problems[t].code] * 2 + ["top(1)"] * 3 for t in rows}
    for name, samples in (("a", a), ("b", b)):
        (tmp_path / f"{name}.json").write_text(json.dumps(samples))
    evals = _run(monkeypatch, tmp_path, "--language", "cf", "--limit", "12", "--seed", "3", "--name", "pool",
                 "--samples", f"a={tmp_path / 'a.json'},b={tmp_path / 'b.json'}")  # fmt: skip
    top1 = {k: v["execution_match@1"] for k, v in evals.items() if k.endswith("MBR (execution)")}
    assert top1["pooled (a + b), 10 samples, MBR (execution)"] == 1.0
    assert top1["a, 5 samples, MBR (execution)"] < 1.0 and top1["b, 5 samples, MBR (execution)"] < 1.0
    assert "baseline: tfidf" in evals and "baseline: constant" in evals


def test_a_samples_file_of_other_rows_is_refused_by_name(shared_data, tmp_path, monkeypatch):
    (tmp_path / "a.json").write_text(json.dumps({"x": ["top(1)"]}))
    with pytest.raises(SystemExit, match=r"--samples a: .*a\.json holds 1 rows"):
        _run(monkeypatch, tmp_path, "--language", "cf", "--name", "pool",
             "--samples", f"a={tmp_path / 'a.json'},b={tmp_path / 'a.json'}")  # fmt: skip
