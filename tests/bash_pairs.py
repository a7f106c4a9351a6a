"""The short Bash pairs the tiny CodeFusion learning tests train on (a helper module, not a test)."""

from __future__ import annotations

from pathlib import Path

import pytest


def short_bash_pairs(shared_data: Path, n: int) -> list[tuple[str, str]]:
    """Up to ``n`` train pairs of CodeFusion's Bash benchmark (file order) with short code and a unique
    utterance; skips when the data is absent."""
    from nl2code.data.sources import load_source

    path = shared_data / "codefusion" / "benchmarks" / "BashBenchmarks.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    pairs, seen = [], set()
    for rec in load_source("codefusion-bash", path).split("train"):
        nl, code = rec.nl.strip(), rec.code.strip()
        if len(code) <= 15 and len(nl) <= 35 and nl not in seen:
            seen.add(nl)
            pairs.append((nl, code))
        if len(pairs) == n:
            break
    return pairs
