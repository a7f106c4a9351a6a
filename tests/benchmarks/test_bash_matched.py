"""benchmarks/bash_matched.py's pieces: the grouped split leaks no command, configs carry the budget."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bash_matched as bm  # noqa: E402


def test_grouped_split_keeps_every_command_on_one_side(shared_data, tmp_path):
    rows = [json.loads(x) for x in bm.grouped_split(tmp_path / "g.jsonl").read_text().splitlines()]
    train = {r["code"].strip() for r in rows if r["split"] == "train"}
    test = [r for r in rows if r["split"] == "test"]
    assert len(rows) == 12_607 and 0.15 < len(test) / len(rows) < 0.25
    assert not any(r["code"].strip() in train for r in test)


def test_configs_carry_the_budget_the_split_and_the_scale(tmp_path):
    args = argparse.Namespace(
        tiny=False, scale="paper", seed=3, max_steps=500, minutes=2.5, batch_size=16, device="cpu",
        precision="fp32", threads=1,
    )  # fmt: skip
    data = {"source": "jsonl", "path": "/x/g.jsonl"}
    cf = yaml.safe_load(bm.write_config("codefusion_rag", data, args, tmp_path / "cf.yaml").read_text())
    assert cf["train"]["max_minutes"] == 2.5 and cf["train"]["seed"] == 3 and cf["train"]["cpu_threads"] == 1
    assert cf["data"]["source"] == "jsonl" and cf["data"]["format"] == "code_nl"
    assert cf["objective"]["retrieval_k"] == 1 and cf["model"]["d_model"] == 512  # the 75m shape
    args.scale = "recipe"
    ar = yaml.safe_load(bm.write_config("ar", data, args, tmp_path / "ar.yaml").read_text())
    recipe = yaml.safe_load((bm.REPO / "configs/codegen/bash_cpu.yaml").read_text())
    assert ar["model"] == recipe["model"] and ar["train"]["max_minutes"] == 2.5
