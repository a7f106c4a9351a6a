"""benchmarks/bash_matched.py's pieces: the grouped split leaks no command, configs carry the budget."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import yaml

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bash_matched as bm  # noqa: E402
import matched_langs as ml  # noqa: E402
import matched_mbr as mm  # noqa: E402


def test_grouped_split_keeps_every_command_on_one_side(shared_data, tmp_path):
    rows = [
        json.loads(x) for x in ml.grouped_split(ml.LANGUAGES["bash"], tmp_path / "g.jsonl").read_text().splitlines()
    ]
    train = {r["code"].strip() for r in rows if r["split"] == "train"}
    test = [r for r in rows if r["split"] == "test"]
    assert len(rows) == 12_607 and 0.15 < len(test) / len(rows) < 0.25
    assert not any(r["code"].strip() in train for r in test)


def test_the_grouped_cf_split_keeps_the_tables_execution_match_runs_on(shared_data, tmp_path):
    lang = ml.LANGUAGES["cf"]
    data, problems, train = ml.split_data(lang, "grouped", tmp_path)
    _, paper_test, paper_train = ml.split_data(lang, "paper", tmp_path)
    paper = {r.task_id: r for r in [*paper_test.values(), *paper_train]}
    usable = [r for r in paper.values() if r.nl.strip() and r.code.strip()]  # the jsonl source drops empty rows
    assert data["source"] == "jsonl" and len(problems) + len(train) == len(usable) >= 880
    assert not {p.code.strip() for p in problems.values()} & {r.code.strip() for r in train}
    assert all(p.extras["table"] and p.language == "cf" for p in problems.values())
    gold = {t: [p.code] for t, p in problems.items()}
    assert ml.judge(lang, problems, gold)["execution_match@1"] == 1.0  # every gold rule runs on its own table
    assert all(r.extras["table"] == paper[r.task_id.removeprefix("jsonl/")].extras["table"] for r in train)


def test_configs_carry_the_budget_the_split_and_the_scale(tmp_path):
    args = argparse.Namespace(
        tiny=False, scale="paper", seed=3, max_steps=500, minutes=2.5, batch_size=16, device="cpu",
        precision="fp32", threads=1, language="bash", curve=0, set=[],
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

    assert ar["train"]["ckpt_every"] == 0 and ar["train"]["keep_last"] == 1
    args.curve = 250  # the learning curve keeps every checkpoint
    ar = yaml.safe_load(bm.write_config("ar", data, args, tmp_path / "ar.yaml").read_text())
    assert ar["train"]["ckpt_every"] == 250 and ar["train"]["keep_last"] >= 1000
    args.language = "cf"
    cf_ar = yaml.safe_load(
        bm.write_config("ar", {"source": "codefusion-cf"}, args, tmp_path / "cf_ar.yaml").read_text()
    )
    assert cf_ar["data"]["source"] == "codefusion-cf" and cf_ar["tokenizer"]["vocab_size"] == 2048
    args.set = ["ar:model.copy_head=false", "codefusion:train.lr=1.0e-4", "ar:data.copy_augment=2"]
    cf_ar = yaml.safe_load(bm.write_config("ar", {}, args, tmp_path / "cf_ar.yaml").read_text())
    assert cf_ar["model"]["copy_head"] is False and cf_ar["data"]["copy_augment"] == 2
    assert cf_ar["train"]["lr"] == 1.0e-3  # another system's --set is not applied
    args.set = ["ar:copy_head=true"]
    with pytest.raises(SystemExit, match="SECTION.KEY"):
        bm.write_config("ar", {}, args, tmp_path / "bad.yaml")


def test_a_multi_stage_recipe_spends_the_budget_in_its_stage_proportions(tmp_path):
    args = argparse.Namespace(
        tiny=False, scale="recipe", seed=0, max_steps=500, minutes=8.0, batch_size=16, device="cpu",
        precision="recipe", threads=1, language="cf", curve=0, set=[],
    )  # fmt: skip
    cfg = yaml.safe_load(bm.write_config("codefusion_pt", {}, args, tmp_path / "pt.yaml").read_text())
    recipe = yaml.safe_load((bm.REPO / "configs/codefusion/cf_pt.yaml").read_text())["stages"]
    shares = [st["train"]["max_minutes"] for st in recipe]
    minutes = [st["train"]["max_minutes"] for st in cfg["stages"]]
    assert sum(minutes) == pytest.approx(8.0) and minutes == pytest.approx([8.0 * s / sum(shares) for s in shares])
    assert [st["name"] for st in cfg["stages"]] == ["pretrain_gen", "pretrain_cpd", "finetune"]
    bad = {"stages": [{"name": "a", "train": {"max_minutes": 1}}, {"name": "b"}]}
    with pytest.raises(SystemExit, match="max_minutes"):
        bm.scale_stage_minutes(bad, 8.0, "x")


def test_cf_rules_baselines_are_scored_by_execution(shared_data, tmp_path):
    lang = ml.LANGUAGES["cf"]
    _, problems, train = ml.split_data(lang, "paper", tmp_path)
    assert len(problems) == 178 and len(train) == 712
    constant = ml.constant_answer(lang, train)
    assert constant == "ColorScale()"  # 105 of the 712 train rules
    gold = ml.judge(lang, problems, {t: [p.code] for t, p in problems.items()})
    const = ml.judge(lang, problems, {t: [constant] for t in problems})
    assert gold["execution_match@1"] == 1.0 and gold["exact_match@1"] == 1.0
    assert 0.0 < const["execution_match@1"] < 0.3 and const["execution_match@1"] == const["execution_match@5"]
    # column linking never moves a gold rule off its formatting (the implicit ones already use the default column)
    assert ml.judge(lang, problems, ml.linked(problems, {t: [p.code] for t, p in problems.items()}))[
        "execution_match@1"
    ] == 1.0  # fmt: skip


def test_python_baselines_report_syntax_bleu_and_codebleu(shared_data, tmp_path):
    lang = ml.LANGUAGES["python"]
    _, problems, train = ml.split_data(lang, "paper", tmp_path)
    assert len(problems) == 500 and len(train) == 2379
    gold = ml.judge(lang, problems, {t: [p.code] for t, p in problems.items()})
    assert gold["exact_match@1"] == 1.0 and gold["bleu"] > 99 and gold["codebleu"] > 0.9
    assert set(gold) == {"exact_match@1", "exact_match@3", "exact_match@5", "syntax_valid", "bleu", "codebleu"}


def test_valid_first_puts_a_rule_that_runs_on_the_table_before_one_that_does_not(shared_data, tmp_path):
    lang = ml.LANGUAGES["cf"]
    _, problems, _ = ml.split_data(lang, "paper", tmp_path)
    broken = {t: ["GreaterThan(c[40], 1)", "TextContains(", p.code] for t, p in problems.items()}
    steps = ml.variants(lang)
    values = ml.LINKED + ml.VALUES
    assert list(steps) == [
        "", ml.LINKED, ml.LINKED + ml.VALID, ml.LINKED + ml.VALID + ml.DISTINCT,
        values, values + ml.VALID, values + ml.VALID + ml.DISTINCT,
    ]  # fmt: skip
    judged = ml.judge_variants(lang, problems, broken)
    assert list(judged) == list(steps) and judged[values + ml.VALID] == ml.judge(
        lang, problems, steps[values + ml.VALID](problems, broken)
    )
    plain = ml.judge(lang, problems, broken)
    valid = ml.judge(lang, problems, steps[ml.LINKED + ml.VALID](problems, broken))
    assert plain["execution_match@1"] == 0.0 and plain["execution_match@3"] == 1.0
    # 6 gold rules do not run (Excel formulas ...): they stay behind the two broken candidates
    assert valid["execution_match@1"] == pytest.approx(172 / 178) and valid["syntax_valid"] == plain["syntax_valid"]
    py = ml.LANGUAGES["python"]
    assert list(ml.variants(py)) == ["", ml.VALID]
    assert ml.valid_first(py, {}, {"x": ["f(", "g()"]}) == {"x": ["g()", "f("]}


def test_distinct_results_on_cf_tables_need_no_gold_and_only_the_first_five_are_judged(shared_data, tmp_path):
    """Copies of a wrong rule's formatting ranked first move behind the gold rule's; the judge reads the first 5
    candidates of a longer pool."""
    lang = ml.LANGUAGES["cf"]
    _, problems, _ = ml.split_data(lang, "paper", tmp_path)
    runs = {t: p for t, p in problems.items() if p.code.startswith("GreaterThan(") and len(p.extras["table"]) > 3}
    assert len(runs) >= 5
    wrong = "ColorScale()"
    bad = [wrong, wrong + " ", "TextContains(", wrong, wrong, wrong]  # one behaviour (a colour scale), or no rule
    pool = {t: [*bad, p.code] for t, p in runs.items()}
    assert ml.judge(lang, runs, pool)["execution_match@5"] == 0.0
    after = ml.judge(lang, runs, ml.distinct_results(lang, runs, pool))
    assert after["execution_match@1"] == 0.0 and after["execution_match@3"] == 1.0  # ColorScale, then gold
    # the 10th candidate (gold) is never judged: only the first 5 count
    assert ml.judge(lang, runs, {t: [wrong] * 9 + [p.code] for t, p in runs.items()})["execution_match@5"] == 0.0
    assert ml.LANGUAGES["cf"].pool == 10 and ml.LANGUAGES["bash"].pool == 10 and ml.LANGUAGES["python"].pool == 5


def test_cf_steps_run_each_rule_once_per_table(shared_data, tmp_path, monkeypatch):
    """Valid first and distinct results ask about the same candidates: each (rule, table) runs once."""
    import nl2code.eval.tasks.cf_rules as cf_rules

    lang = ml.LANGUAGES["cf"]
    _, problems, _ = ml.split_data(lang, "paper", tmp_path)
    rows = dict(list(problems.items())[:4])
    ran: list[tuple[str, int]] = []
    real = cf_rules.run_rule

    def counted(rule, table):
        ran.append((rule, id(table)))
        return real(rule, table)

    monkeypatch.setattr(cf_rules, "run_rule", counted)
    pool = {t: [p.code, "TextContains(", p.code + " ", "ColorScale()"] for t, p in rows.items()}
    again = ml.distinct_results(lang, rows, ml.valid_first(lang, rows, pool))
    assert len(ran) == len(set(ran)) == 4 * len(rows)
    assert ml.cf_result(rows[next(iter(rows))].extras["table"])(pool[next(iter(rows))][0]) is not None
    assert {t: sorted(c) for t, c in again.items()} == {t: sorted(c) for t, c in pool.items()}


def test_mbr_setting_samples_then_ranks_by_cms_without_reading_the_gold(monkeypatch):
    """``--mbr N`` adds an N-sample setting first (the curve keeps following the last); its samples are ranked
    by minimum Bayes risk under CMS before the first 5 are judged."""
    from types import SimpleNamespace

    import nl2code.generation.autoregressive as ar
    import nl2code.generation.diffusion as diffusion
    from nl2code.generation.types import Candidate

    monkeypatch.setattr(ar, "ARGenerator", lambda run: run)  # the settings only: no model is loaded
    monkeypatch.setattr(diffusion, "DiffusionGenerator", lambda run: run)
    args = argparse.Namespace(language="bash", mbr=6, seed=0, steps="1,20", draws=0, gen_batch=8)
    _, cfgs = bm.sampler(None, "ar", args)
    label, first = next(iter(cfgs.items()))
    assert label == "6 samples, MBR (cms)" and first.n == 6 and first.temperature == 1.0
    assert list(cfgs)[-1] == "5-beam"
    _, cf_cfgs = bm.sampler(None, "codefusion", args)
    mbr_cfgs = list(cf_cfgs.items())[:2]  # at each of --steps: the sampler beside its own single step
    assert [label for label, _ in mbr_cfgs] == ["1 steps, 6 samples, MBR (cms)", "20 steps, 6 samples, MBR (cms)"]
    assert [(c.n, c.steps, c.draws) for _, c in mbr_cfgs] == [(6, 1, 0), (6, 20, 0)]

    pool = ["ls -l", "find . -name a -print0 | xargs -0 rm", "find . -name b", "find . -type f -name c", "", "du"]

    class Fake:
        def generate(self, prompts, cfg):
            return [[Candidate(t, 0.0) for t in pool] for _ in prompts]

    problems = {"t": SimpleNamespace(nl="find the files named x", code="find . -name x")}
    _, samples = bm.sample_judge(Fake(), first, problems, args, label)
    assert samples["t"][0] == "find . -name b" and "" not in samples["t"]
    _, as_made = bm.sample_judge(Fake(), first, problems, args, "5-beam")
    assert as_made["t"] == pool
    ranked = mm.rankings(label, {"t": pool}, args)  # the same samples, ranked plainly and as a set of 5
    assert list(ranked) == [label, label + ", set of 5"] and ranked[label]["t"] == samples["t"]
    assert sorted(ranked[label + ", set of 5"]["t"]) == sorted(samples["t"])
    assert mm.rankings("5-beam", {"t": pool}, args) == {"5-beam": {"t": pool}}
    mixed = mm.rankings(label, {"t": pool}, args, (0.5, {"t": ["find . -name q -type f"]}))  # --mbr-retrieval
    assert list(mixed)[2:] == [label + " + retrieval 0.5", label + " + retrieval 0.5, set of 5"]
    top = mixed[label + " + retrieval 0.5"]["t"]
    assert top[0] == "find . -type f -name c" and "find . -name q -type f" in top  # the neighbour tips -type f
    assert mm.headline(ml.LANGUAGES["bash"]) == "cms@1" and mm.headline(ml.LANGUAGES["python"]) == "bleu"
    assert mm.mbr_label(argparse.Namespace(language="cf", mbr=6)) == "6 samples, MBR (execution)"
    bleu = ml.utility_of(ml.LANGUAGES["python"])
    assert bleu("x.sort()", "x.sort()") == 1.0 > bleu("x.sort(reverse=True)", "x.sort()") > bleu("print(1)", "x.sort()")
    assert mm.mbr_label(argparse.Namespace(language="bash", mbr=0)) is None


def test_cf_mbr_ranks_the_behaviour_the_samples_give_most_on_the_requests_own_table(shared_data, tmp_path):
    """CF's MBR utility is execution agreement of the linked rules on the row's table (MBR-exec): a rule whose
    formatting most samples share comes first even when it was sampled once, written differently from the rest;
    rules that do not run never win; the utility needs the request (its table)."""
    lang = ml.LANGUAGES["cf"]
    _, problems, _ = ml.split_data(lang, "paper", tmp_path)
    t, p = next((t, p) for t, p in problems.items() if p.code == "LessThan(c[2], 100)" and len(p.extras["table"]) > 3)
    wrong, broken = "GreaterThan(c[2], 100)", "TextContains("
    # the last three give the gold formatting: LessThan(100) once bound to the column the request names
    samples = [wrong, broken, broken, broken, "LessThanEqual(c[2], 99.5)", "LessThan(100)", "LessThan(c[2], 100.0)"]
    formatting = ml.cf_result(p.extras["table"])
    assert formatting("LessThan(100)") != formatting(p.code) == formatting("LessThanEqual(c[2], 99.5)")
    args = argparse.Namespace(language="cf", mbr=7)
    label = mm.mbr_label(args)
    ranked = mm.rankings(label, {t: samples}, args, problems={t: p})[label][t]
    assert ranked[:3] == samples[4:] and ranked[-1] == broken
    assert ml.judge(lang, {t: p}, {t: ranked})["execution_match@1"] == 1.0
    assert ml.judge(lang, {t: p}, {t: samples})["execution_match@1"] == 0.0
    with pytest.raises(ValueError, match="table"):
        ml.utility_of(lang)


def test_bash_distinct_results_move_commands_that_differ_only_in_arguments_back():
    lang = ml.LANGUAGES["bash"]
    assert list(ml.variants(lang)) == ["", ml.VALID, ml.VALID + ml.DISTINCT]
    pool = ["find . -name '*.txt'", "find /tmp -name a.c", "", "ls -l", "find . -type f"]
    moved = ml.distinct_results(lang, {}, {"t": pool})["t"]
    assert moved == ["find . -name '*.txt'", "ls -l", "find . -type f", "find /tmp -name a.c", ""]


def test_finished_runs_must_have_trained_on_the_split_they_are_judged_on(tmp_path):
    """--runs on the grouped split: a run whose training rows differ from the split written here is refused."""
    row = {"task_id": "b/0", "nl": "list files", "code": "ls", "language": "bash", "split": "test"}
    split, same, other = tmp_path / "bash_grouped.jsonl", tmp_path / "same.jsonl", tmp_path / "other.jsonl"
    split.write_text(json.dumps(row) + "\n")
    same.write_text(json.dumps({"id": 0, **row}) + "\n")  # the same rows with one more field: accepted
    other.write_text(json.dumps({**row, "split": "train"}) + "\n")
    run = tmp_path / "run"
    run.mkdir()

    def trained_on(source, path):
        (run / "config.yaml").write_text(yaml.safe_dump({"data": {"source": source, "path": str(path)}}))

    grouped = {"source": "jsonl", "path": str(split)}
    for path in (split, same):
        trained_on("jsonl", path)
        bm.check_trained_on(run, grouped, "--runs ar")
    refused = [("jsonl", other, "does not hold this split"), ("codefusion-bash", split, "data.source")]
    for source, path, message in refused:
        trained_on(source, path)
        with pytest.raises(SystemExit, match=message):
            bm.check_trained_on(run, grouped, "--runs ar")
    trained_on("codefusion-bash", "x.json")
    bm.check_trained_on(run, {"source": "codefusion-bash", "path": "x.json"}, "--runs ar")


def test_a_multi_stage_run_reports_the_loop_time_of_all_its_stages(tmp_path):
    rows = [
        {"stage": "pretrain", "step": 50, "loss": 3.0, "tok_per_s": 900.0, "elapsed_s": 10.0},
        {"stage": "pretrain", "step": 100, "loss": 2.0, "tok_per_s": 950.0, "elapsed_s": 20.0},
        {"stage": "pretrain", "step": 100, "split": "eval", "ce": 2.5},  # an eval row has no loop time
        {"stage": "finetune", "step": 50, "loss": 1.0, "tok_per_s": 600.0, "elapsed_s": 30.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert bm.stage_loops(bm.loop_rows(tmp_path)) == {"pretrain": 20.0, "finetune": 30.0}
    info = bm.finished(tmp_path)
    assert (info["steps"], info["loop_s"], info["last_loss"], info["tok_per_s"]) == (50, 50.0, 1.0, 600)
    assert info["stage_loop_s"] == {"pretrain": 20.0, "finetune": 30.0}
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "stage"}) + "\n"
                                                    for r in rows[:2]))
    assert "stage_loop_s" not in bm.finished(tmp_path) and bm.finished(tmp_path)["loop_s"] == 20.0


def test_guidance_weights_and_their_sampling_labels(monkeypatch):
    import nl2code.generation.diffusion as gd

    assert bm.guidance_weights("1,1.5:1,2") == [(1.0, None), (1.5, 1.0), (2.0, None)]
    with pytest.raises(SystemExit, match="W:D"):
        bm.guidance_weights("1,x")
    monkeypatch.setattr(gd, "DiffusionGenerator", lambda run: "generator")
    args = argparse.Namespace(language="bash", steps="1", scores="final", draws=0, mbr=4, seed=0, gen_batch=8,
                              guidance="1,1.5:1")  # fmt: skip
    gen, cfgs = bm.sampler(None, "codefusion", args)
    guided = {k: (c.guidance, c.decoder_guidance) for k, c in cfgs.items()}
    assert guided == {
        "1 steps, 4 samples, MBR (cms)": (1.0, None),
        "1 steps, guidance 1.5:1, 4 samples, MBR (cms)": (1.5, 1.0),
        "1 steps": (1.0, None),
        "1 steps, guidance 1.5:1": (1.5, 1.0),
    }
    assert all(mm.is_mbr(k, args) == ("MBR" in k) for k in cfgs)


def test_roundings_make_settings_of_their_own(monkeypatch):
    """--roundings: each rounding judged at each step count, its name in the label unless it is the default."""
    import nl2code.generation.diffusion as gd

    monkeypatch.setattr(gd, "DiffusionGenerator", lambda run: "generator")
    args = argparse.Namespace(language="bash", steps="1,20", scores="final", draws=0, mbr=4, seed=0, gen_batch=8,
                              roundings="default,decoder_sample")  # fmt: skip
    _, cfgs = bm.sampler(None, "codefusion", args)
    assert {k: c.rounding for k, c in cfgs.items() if c.steps == 20} == {
        "20 steps, 4 samples, MBR (cms)": None,
        "20 steps, decoder_sample rounding, 4 samples, MBR (cms)": "decoder_sample",
        "20 steps": None,
        "20 steps, decoder_sample rounding": "decoder_sample",
    }
    assert all(mm.is_mbr(k, args) == ("MBR" in k) for k in cfgs)


def test_mbr_sampling_settings_and_their_labels(monkeypatch):
    import nl2code.generation.autoregressive as ar

    assert bm.mbr_sampling("1,0.7,1:0.9") == [(1.0, 1.0), (0.7, 1.0), (1.0, 0.9)]
    for bad in ("x", "0", "1:1.5", "1:0"):
        with pytest.raises(SystemExit, match="--mbr-sampling"):
            bm.mbr_sampling(bad)
    monkeypatch.setattr(ar, "ARGenerator", lambda run: "generator")
    args = argparse.Namespace(language="bash", mbr=4, seed=0, guidance="1", mbr_sampling="1,0.7,0.8:0.9")
    _, cfgs = bm.sampler(None, "ar", args)
    drawn = {k: (c.n, c.temperature, c.top_p) for k, c in cfgs.items() if mm.is_mbr(k, args)}
    assert drawn == {
        "4 samples, MBR (cms)": (4, 1.0, 1.0),
        "temperature 0.7, 4 samples, MBR (cms)": (4, 0.7, 1.0),
        "temperature 0.8, top-p 0.9, 4 samples, MBR (cms)": (4, 0.8, 0.9),
    }
    assert any("beam" in k for k in cfgs)
    args.mbr_only = True  # the MBR settings alone: no beam search
    assert set(bm.sampler(None, "ar", args)[1]) == set(drawn)


def test_the_ar_pretraining_recipe_is_the_pairs_recipe_after_a_snippet_stage(tmp_path):
    from nl2code.config import read_yaml
    from nl2code.train.config import load_run_config

    pairs = read_yaml(bm.REPO / "configs/codegen/bash_cpu.yaml")
    pt = read_yaml(bm.REPO / "configs/codegen/bash_cpu_pt.yaml")  # extends bash_cpu.yaml
    for section in ("model", "objective", "data", "tokenizer"):  # bash_ar_pt40.md: only the stage differs
        assert pt[section] == pairs[section], section
    _, stages = load_run_config(bm.REPO / "configs/codegen/bash_cpu_pt.yaml")
    assert [s.name for s in stages] == ["pretrain", "finetune"]
    assert stages[0].data.source == "snippets" and stages[0].data.packing and stages[0].data.format == "code"
    assert stages[1].data.format == "nl_code" and stages[1].data.loss_on == "code"
    args = argparse.Namespace(
        tiny=False, scale="recipe", seed=0, max_steps=500, minutes=40.0, batch_size=32, device="cpu",
        precision="recipe", threads=1, language="bash", curve=0, set=[],
    )  # fmt: skip
    cfg = yaml.safe_load(bm.write_config("ar_pt", {}, args, tmp_path / "pt.yaml").read_text())
    assert [st["train"]["max_minutes"] for st in cfg["stages"]] == [10.0, 30.0]
    # a stage's --set lands before the scaling: its max_minutes is its share (here 15 : 15, so 20 / 20)
    args.set = ["ar_pt@half:stages.pretrain.train.max_minutes=15", "ar_pt@half:stages.finetune.train.lr=3.0e-4"]
    cfg = yaml.safe_load(bm.write_config("ar_pt@half", {}, args, tmp_path / "half.yaml").read_text())
    assert [st["train"]["max_minutes"] for st in cfg["stages"]] == [20.0, 20.0]
    assert cfg["stages"][1]["train"]["lr"] == 3.0e-4 and "lr" not in cfg["stages"][0]["train"]
    assert cfg["train"]["lr"] == 1.0e-3  # the top-level section is untouched
    args.set = ["ar_pt@x:stages.warmup.train.max_minutes=1"]
    with pytest.raises(SystemExit, match="no stage 'warmup'"):
        bm.write_config("ar_pt@x", {}, args, tmp_path / "bad.yaml")


def test_the_report_lists_an_ensembles_member_runs(tmp_path):
    from _common import machine_info

    facts = {"steps": 10, "loop_s": 60.0, "last_loss": 0.5, "tok_per_s": 1000}
    scores = {"cms@1": 0.5, "cms@3": 0.6, "cms@5": 0.7, "template_match@1": 0.1, "syntax_valid": 1.0}
    entry = {"parameters": 8, "evals": {"30 samples, MBR (cms)": scores}, "examples": []}
    part = {"rows": 2, "test_rows": 2, "train_rows": 5, "constant": "ls", "baselines": {}, "systems": {
        "one": {**entry, "train": {**facts, "run_dir": "/r/a"}},
        "ens": {**entry, "train": {"members": [{**facts, "run_dir": "/r/a"},
                                               {**facts, "steps": 12, "run_dir": "/r/b"}]}},
    }}  # fmt: skip
    result = {"language": "bash", "machine": machine_info(), "command": "x", "scale": "recipe", "runs": True,
              "seed": 0, "minutes": 1.0, "precision": "fp32", "splits": {"paper": part}}  # fmt: skip
    bm.report(result, tmp_path, "t")
    text = (tmp_path / "t.md").read_text()
    assert "| one | 8 | 10 |" in text
    assert "| ens, member 1 (a) | 8 (all members) | 10 |" in text
    assert "| ens, member 2 (b) | 8 (all members) | 12 |" in text
