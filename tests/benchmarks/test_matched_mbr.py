"""benchmarks/matched_mbr.py: the retrieval-consensus control, the held-out rows (never test rows) and the held-out
choice of retrieval's share."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import matched_langs as ml  # noqa: E402
import matched_mbr as mm  # noqa: E402


def test_retrieval_consensus_ranks_the_neighbours_by_their_own_agreement():
    """The --mbr control: the neighbours alone, the one the others agree with most first (set of 5)."""
    near = {"t": ["ls -l", "find . -name a", "find . -name b -type f", "find . -name c"]}
    ranked = mm.consensus(ml.LANGUAGES["bash"], near)["t"]
    assert ranked[0].startswith("find . -name") and sorted(ranked) == sorted(near["t"])


def test_mbr_retrieval_share_is_chosen_on_the_rows_the_run_held_out(tmp_path):
    """choose_share samples only the run's held-out train rows (never a test row), retrieves over its training
    rows, and returns the share with the best CMS@1 on them (ties: the smaller)."""
    from types import SimpleNamespace

    from nl2code.config import from_dict
    from nl2code.data.pipeline import load_splits
    from nl2code.generation.types import Candidate
    from nl2code.train.config import RunConfig

    pairs = [(f"find files named f{i}", f"find . -name f{i}") for i in range(20)]
    pairs += [(f"list directory d{i}", f"ls -l d{i}") for i in range(20)]
    rows = [{"task_id": f"b/{i}", "nl": nl, "code": code, "language": "bash", "split": "train"}
            for i, (nl, code) in enumerate(pairs)]  # fmt: skip
    rows.append({"task_id": "b/test", "nl": "find files named q", "code": "find . -name q", "language": "bash",
                 "split": "test"})  # fmt: skip
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = from_dict(RunConfig, {"model": {"kind": "codegen", "vocab_size": 64}, "objective": {"kind": "causal_lm"},
                                "data": {"source": "jsonl", "path": str(data), "eval_fraction": 0.3}})  # fmt: skip
    _, held, _ = load_splits(cfg.data)
    asked = []

    class Fake:
        def generate(self, prompts, gen_cfg):
            asked.extend(prompts)
            return [[Candidate("du -sh", 0.0)] * 4 for _ in prompts]  # always wrong: retrieval must win

    args = argparse.Namespace(language="bash", limit=0, seed=0)
    chosen = mm.choose_share(Fake(), None, SimpleNamespace(config=cfg), args)
    assert sorted(asked) == sorted(r.nl for r in held) and "find files named q" not in asked and held
    assert list(chosen["scores"]) == list(mm.SHARES) and chosen["held_out_rows"] == len(held)
    assert chosen["scores"][0.0] < chosen["scores"][chosen["share"]] == max(chosen["scores"].values())
    assert chosen["share"] == min(s for s, v in chosen["scores"].items() if v == max(chosen["scores"].values()))


def run_on(tmp_path: Path, eval_fraction: float) -> SimpleNamespace:
    from nl2code.config import from_dict
    from nl2code.train.config import RunConfig

    rows = [{"task_id": f"b/{i}", "nl": f"list directory d{i}", "code": f"ls -l d{i}", "language": "bash",
             "split": "train"} for i in range(40)]  # fmt: skip
    rows.append({"task_id": "b/test", "nl": "list q", "code": "ls q", "language": "bash", "split": "test"})
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    section = {"source": "jsonl", "path": str(data), "eval_fraction": eval_fraction}
    model = {"kind": "codegen", "vocab_size": 64}
    cfg = from_dict(RunConfig, {"model": model, "objective": {"kind": "causal_lm"}, "data": section})
    return SimpleNamespace(config=cfg, run_dir=tmp_path)


def test_held_out_rows_are_a_seeded_sample_of_the_held_out_part(tmp_path):
    from nl2code.data.pipeline import load_splits

    run = run_on(tmp_path, 0.3)
    _, held, _ = load_splits(run.config.data)
    train, every = mm.held_out(run, 0, 0, "x")
    assert set(every) == {r.task_id for r in held} and "b/test" not in every and len(every) > 3
    assert not {r.task_id for r in train} & set(every) and len(train) + len(every) == 40
    some = mm.held_out(run, 3, 0, "x")[1]
    assert len(some) == 3 and set(some) <= set(every) and some.keys() == mm.held_out(run, 3, 0, "x")[1].keys()
    with pytest.raises(SystemExit, match="ranking: the run held out no rows"):
        mm.held_out(run_on(tmp_path, 0.0), 0, 0, "ranking")
