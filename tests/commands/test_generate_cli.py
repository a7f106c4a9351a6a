"""``nl2code generate`` / ``infill`` / ``hf`` on a tiny run directory (built directly, no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nl2code import cli
from nl2code import config as config_io
from nl2code.config import from_dict
from nl2code.data.tokenizer import CodeTokenizer
from nl2code.models import build_model
from nl2code.train.checkpoint import save_weights
from nl2code.train.config import RunConfig

TEXTS = ["find all files", "ls -la /tmp", "def f(x):\n    return x + 1\n", "count lines in a file", "wc -l a.txt"]


def make_run(root: Path, fmt: str = "nl_code", objective: dict | None = None, data: dict | None = None) -> Path:
    tok = CodeTokenizer.train(TEXTS * 4, vocab_size=300)
    tok.save(root / "tokenizer")
    cfg = from_dict(RunConfig, {
        "model": {"kind": "codegen", "vocab_size": tok.vocab_size, "d_model": 32, "n_layers": 1, "n_heads": 4,
                  "mlp": "swiglu", "max_seq_len": 64},
        "objective": objective or {"kind": "causal_lm"},
        "data": {"format": fmt, **(data or {})},
    })
    config_io.save(cfg, root / "config.yaml")
    save_weights(build_model(cfg.model, generator=torch.Generator().manual_seed(0)), root / "model.safetensors")
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run"))


def main(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_output_for_one_and_several_prompts(run_dir, capsys):
    code, out, _ = main(["generate", "--run", str(run_dir), "find files", "-n", "2", "--max-new-tokens", "6",
                         "--json"], capsys)
    one = json.loads(out)
    assert code == 0 and isinstance(one, list) and len(one) == 2 and all(isinstance(s, str) for s in one)
    code, out, _ = main(["generate", "--run", str(run_dir), "a", "b", "c", "--temperature", "0.7", "--top-k", "5",
                         "--seed", "3", "--max-new-tokens", "5", "--json"], capsys)
    several = json.loads(out)
    assert code == 0 and [len(x) for x in several] == [1, 1, 1]
    _, again, _ = main(["generate", "--run", str(run_dir), "a", "b", "c", "--temperature", "0.7", "--top-k", "5",
                        "--seed", "3", "--max-new-tokens", "5", "--json"], capsys)
    assert json.loads(again) == several  # deterministic under a seed
    code, out, _ = main(["generate", "--run", str(run_dir), "x", "--max-new-tokens", "3"], capsys)
    assert code == 0 and "=== prompt 1: x" in out and "(score " in out


def test_prompts_file_and_jsonl_output(run_dir, tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"task_id": "t/1", "nl": "list files"}\n\n{"task_id": 7, "prompt": "count"}\n')
    out_file = tmp_path / "samples.jsonl"
    code, _, err = main(["generate", "--run", str(run_dir), "--prompts-file", str(prompts), "-n", "2",
                         "--max-new-tokens", "4", "--out", str(out_file)], capsys)
    rows = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert code == 0 and "wrote 4 candidates" in err
    assert [(r["task_id"], r["rank"]) for r in rows] == [("t/1", 0), ("t/1", 1), ("7", 0), ("7", 1)]
    assert set(rows[0]) == {"task_id", "prompt", "rank", "completion", "score"} and rows[0]["prompt"] == "list files"
    plain = tmp_path / "p.txt"
    plain.write_text("one\ntwo\n")
    code, out, _ = main(["generate", "--run", str(run_dir), "--prompts-file", str(plain), "--max-new-tokens", "2",
                         "--json"], capsys)
    assert code == 0 and len(json.loads(out)) == 2


def test_bad_input_is_one_line_exit_2(run_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    code, _, err = main(["generate", "--run", str(run_dir), "--prompts-file", str(bad)], capsys)
    assert code == 2 and f"{bad}:2" in err and "prompt" in err and len(err.strip().splitlines()) == 1
    code, _, err = main(["generate", "--run", str(tmp_path / "nope"), "x"], capsys)
    assert code == 2 and "missing" in err
    code, _, err = main(["generate", "--run", str(run_dir)], capsys)
    assert code == 2 and "exactly one" in err
    code, _, err = main(["generate", "--run", str(run_dir), "x", "--top-p", "0"], capsys)
    assert code == 2 and "top_p" in err
    code, _, err = main(["generate", "--run", str(run_dir), "x", "--valid-stop", "python", "--temperature", "1"],
                        capsys)
    assert code == 2 and "beam search or greedy" in err
    code, out, _ = main(["generate", "--run", str(run_dir), "x", "--valid-stop", "bash", "--num-beams", "3", "-n", "2",
                         "--max-new-tokens", "4", "--json"], capsys)
    assert code == 0 and len(json.loads(out)) == 2


def test_humaneval_benchmark_samples_feed_the_harness(run_dir, tmp_path, capsys):
    from nl2code.eval.harness import group_samples, read_samples
    from nl2code.eval.tasks import get_task

    out_file = tmp_path / "he.jsonl"
    code, _, _ = main(["generate", "--run", str(run_dir), "--benchmark", "humaneval", "--limit", "2",
                       "--max-new-tokens", "4", "--out", str(out_file)], capsys)
    assert code == 0
    task = get_task("humaneval")
    problems = task.load_problems(None)
    samples = group_samples(task, problems, read_samples(out_file), str(out_file))
    from nl2code.utils.seed import seeded_subset

    expected = seeded_subset(list(problems), 2, 0)  # a seeded random pick in file order, never a prefix
    assert list(samples) == expected and expected != ["HumanEval/0", "HumanEval/1"]


def test_infill_command(run_dir, tmp_path, capsys):
    code, _, err = main(["infill", "--run", str(run_dir), "--prefix", "def f(x):\\n", "--suffix", "\\n"], capsys)
    assert code == 2 and "not trained to infill" in err
    code, out, _ = main(["infill", "--run", str(run_dir), "--prefix", "def f(x):\\n", "--suffix", "\\n",
                         "--mode", "spm", "-n", "2", "--max-new-tokens", "4", "--json"], capsys)
    assert code == 0 and len(json.loads(out)) == 2
    mixture = make_run(tmp_path / "mix", "code", {"kind": "codegen2_mixture"})
    code, out, _ = main(["infill", "--run", str(mixture), "--prefix", "a", "--suffix", "b", "--max-new-tokens", "3",
                         "--json"], capsys)
    assert code == 0 and len(json.loads(out)) == 1


def test_hf_export_then_import_round_trip(run_dir, tmp_path, capsys):
    code, _, _ = main(["hf", "export", "--run", str(run_dir), "--out", str(tmp_path / "hf")], capsys)
    assert code == 0 and (tmp_path / "hf" / "config.json").is_file()
    code, _, _ = main(["hf", "import", str(tmp_path / "hf"), "--run-dir", str(tmp_path / "back"),
                       "--format", "nl_code"], capsys)
    assert code == 0
    args = ["find files", "-n", "2", "--max-new-tokens", "5", "--json"]
    _, a, _ = main(["generate", "--run", str(run_dir), *args], capsys)
    _, b, _ = main(["generate", "--run", str(tmp_path / "back"), *args], capsys)
    assert json.loads(a) == json.loads(b)


def test_mtpb_benchmark_writes_harness_rows(tmp_path, capsys):
    fixture = Path(__file__).resolve().parents[1] / "eval" / "fixtures" / "mtpb_mini.jsonl"
    run = make_run(tmp_path / "code", "code")
    out_file = tmp_path / "mtpb.jsonl"
    code, _, err = main(["generate", "--run", str(run), "--benchmark", "mtpb", "--data", str(fixture), "--limit", "1",
                         "--test-cases", "0,2", "-n", "2", "--temperature", "1", "--max-new-tokens", "3",
                         "--out", str(out_file)], capsys)
    rows = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert code == 0 and "wrote 4 MTPB samples" in err
    assert [(r["test_case"], r["sample"]) for r in rows] == [(0, 0), (0, 1), (2, 0), (2, 1)]
    assert all(isinstance(c, str) for r in rows for c in r["completions"])
    code, _, err = main(["generate", "--run", str(run), "--benchmark", "mtpb", "--data", str(fixture)], capsys)
    assert code == 2 and "--out" in err


def test_rounding_and_syntax_choices_match_the_library():
    from nl2code.commands.generate import ROUNDING_CHOICES, SCORE_CHOICES, SYNTAX_CHOICES
    from nl2code.eval.metrics.syntax import LANGUAGES
    from nl2code.sampling.diffusion import ROUNDINGS, SCORES

    assert ROUNDING_CHOICES == ROUNDINGS and SYNTAX_CHOICES == LANGUAGES and SCORE_CHOICES == SCORES


def test_mbr_returns_the_distinct_samples_in_expected_utility_order(run_dir, capsys):
    """--mbr LANG: the candidates as sampled, deduplicated and reordered by rerank.mbr under LANG's utility."""
    from nl2code.commands import generate as gen_cmd
    from nl2code.generation import rerank

    args = ["generate", "--run", str(run_dir), "find files", "-n", "12", "--temperature", "1", "--seed", "1",
            "--max-new-tokens", "6", "--json"]  # fmt: skip
    _, plain, _ = main(args, capsys)
    sampled = json.loads(plain)
    code, out, _ = main([*args, "--mbr", "bash"], capsys)
    ranked = json.loads(out)
    expected = rerank.mbr(sampled, rerank.mbr_utility("bash"))
    assert code == 0 and ranked == expected and len(ranked) == len(set(ranked)) <= 12
    assert gen_cmd.mbr_ranked([], "python") == []
    with pytest.raises(ValueError, match="no MBR utility"):
        rerank.mbr_utility("cf")
    with pytest.raises(SystemExit):
        cli.main([*args, "--mbr", "cf"])  # not a choice: argparse refuses it
    code, out, _ = main([*args, "--mbr", "bash", "--mbr-set", "3"], capsys)
    assert code == 0 and json.loads(out) == rerank.mbr(sampled, rerank.mbr_utility("bash"), k=3)


@pytest.mark.parametrize(
    "extra, message",
    [(["-n", "1"], "give -n N"), (["--mbr-set", "0"], "--mbr-set must be >= 1")],
)
def test_mbr_refuses_what_it_cannot_rank(run_dir, capsys, extra, message):
    args = ["generate", "--run", str(run_dir), "find files", "--mbr", "bash", *extra]
    code, _, err = main(args, capsys)
    assert code != 0 and message in err
    code, _, err = main(["generate", "--run", str(run_dir), "find files", "-n", "4", "--mbr-set", "2"], capsys)
    assert code != 0 and "--mbr-set needs --mbr" in err


def test_mbr_choices_match_the_library():
    from nl2code.commands.generate import MBR_CHOICES
    from nl2code.generation.rerank import MBR_LANGUAGES

    assert MBR_CHOICES == MBR_LANGUAGES


def test_mbr_retrieval_ranks_the_nearest_training_programs_beside_the_samples(tmp_path, capsys):
    """--mbr-retrieval SHARE: the run's training programs nearest to the prompt join the samples, ranked under
    the mixture of both (rerank.mixture_evidence); they carry no score and are marked retrieved."""
    from nl2code.data.retrieval import retriever_for
    from nl2code.generation import rerank
    from nl2code.generation.load import load_run

    pairs = [("find all files", "find . -type f"), ("count lines in a file", "wc -l a.txt"), ("list tmp", "ls /tmp")]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"task_id": f"b/{i}", "nl": nl, "code": code, "language": "bash",
                                        "split": "train"}) + "\n" for i, (nl, code) in enumerate(pairs)))
    run = make_run(tmp_path / "run", data={"source": "jsonl", "path": str(data), "eval_fraction": 0.0})
    args = ["generate", "--run", str(run), "find all files", "-n", "6", "--temperature", "1", "--seed", "1",
            "--max-new-tokens", "4"]  # fmt: skip
    _, plain, _ = main([*args, "--json"], capsys)
    near = retriever_for(load_run(run).config.data).neighbours("find all files", 10)
    assert near == ["find . -type f"]  # the only request sharing a word with the prompt
    out = tmp_path / "ranked.jsonl"
    code, _, _ = main([*args, "--mbr", "bash", "--mbr-retrieval", "0.5", "--out", str(out)], capsys)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    samples = json.loads(plain)
    expected = rerank.mbr(samples + near, rerank.mbr_utility("bash"), rerank.mixture_evidence(samples, near, 0.5))
    assert code == 0 and [r["completion"] for r in rows] == expected
    assert all(r["score"] is None and r["retrieved"] for r in rows if r["completion"] not in samples)
    assert "find . -type f" not in samples and any(r.get("retrieved") for r in rows)  # the check above saw one
    code, _, err = main([*args, "--mbr-retrieval", "0.5"], capsys)
    assert code != 0 and "--mbr-retrieval needs --mbr" in err


def test_ensemble_decodes_runs_as_one_model(run_dir, tmp_path, capsys):
    args = ["find files", "-n", "3", "--temperature", "1", "--seed", "4", "--max-new-tokens", "6", "--json"]
    _, alone, _ = main(["generate", "--run", str(run_dir), *args], capsys)
    code, twice, _ = main(["generate", "--run", str(run_dir), "--ensemble", str(run_dir), *args], capsys)
    assert code == 0 and json.loads(twice) == json.loads(alone)  # a run mixed with itself is the run
    code, _, err = main(["generate", "--run", str(run_dir), "--ensemble", str(tmp_path / "nope"), *args], capsys)
    assert code == 2 and "nope" in err and "missing" in err
