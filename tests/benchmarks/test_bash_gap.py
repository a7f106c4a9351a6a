"""bash_gap: the utility bands and the split of the model-vs-retrieval gap across them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bash_gap as bg  # noqa: E402


def test_utility_and_band():
    assert bg.utility("sudo find . -name x") == "sudo" and bg.utility("  ") == ""
    assert [bg.band(n) for n in (0, 1, 9, 10, 99, 100, 5000)] == [
        "none", "1-9", "1-9", "10-99", "10-99", "100 or more", "100 or more"
    ]  # fmt: skip


def test_the_bands_shares_add_up_to_the_whole_gap():
    rows = [
        {"band": "100 or more", "model": 0.6, "tfidf": 0.6},
        {"band": "100 or more", "model": 0.7, "tfidf": 0.5},
        {"band": "none", "model": 0.0, "tfidf": 1.0},
        {"band": "1-9", "model": 0.2, "tfidf": 0.6},
    ]
    table = bg.gap_table(rows)
    assert [b["band"] for b in table] == ["100 or more", "1-9", "none"]  # empty bands are left out, order kept
    whole = 100 * sum(r["tfidf"] - r["model"] for r in rows) / len(rows)
    assert sum(b["gap_points"] for b in table) == pytest.approx(whole)
    top = table[0]
    assert top["rows"] == 2 and top["model"] == pytest.approx(0.65) and top["gap_points"] == pytest.approx(-5.0)
