"""Your own data end to end (the README's walkthrough) and ``nl2code report``, browsed in headless Chromium.

200 rows with only ``nl`` and ``code`` -> ``train`` -> ``generate --benchmark jsonl`` -> ``eval jsonl`` ->
``report``, through the CLI as a user types it (tiny budgets), then the page's sample browser is driven.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from browser import needs_browser  # the browser fixture comes from tests/conftest.py
from nl2code import cli
from nl2code.report import build_report, loss_curves, svg_chart


@pytest.fixture(scope="module")
def own_data_run(tmp_path_factory) -> Path:
    """The walkthrough's commands on 200 stdlib docstring/function pairs written with only nl and code."""
    from nl2code.data.sources import load_source

    root = tmp_path_factory.mktemp("own")
    pairs = root / "pairs.jsonl"
    recs = load_source("pysource", max_functions=400).records[:200]
    pairs.write_text("".join(json.dumps({"nl": r.nl, "code": r.code}) + "\n" for r in recs))
    run = root / "runs" / "mine"
    assert cli.main(["train", "configs/smoke/codegen.yaml", "--run-dir", str(run), "data.source=jsonl",
                     f"data.path={pairs}", "data.options={}", "train.max_steps=20", "train.eval_every=10",
                     "train.progress=off", "train.tensorboard=false"]) == 0  # fmt: skip
    samples = run / "samples.jsonl"
    assert cli.main(["generate", "--run", str(run), "--benchmark", "jsonl", "--data", str(pairs), "-n", "3",
                     "--temperature", "0.8", "--max-new-tokens", "24", "--out", str(samples)]) == 0  # fmt: skip
    assert cli.main(["eval", "jsonl", "--data", str(pairs), "--samples", str(samples), "--out", str(run / "eval"),
                     "--k", "1,2,3", "--no-progress"]) == 0  # fmt: skip
    assert cli.main(["report", str(run), "--out", str(root / "report")]) == 0
    return root


def test_report_holds_metrics_curves_and_every_sample(own_data_run):
    page = (own_data_run / "report" / "index.html").read_text()
    summary = json.loads((own_data_run / "runs" / "mine" / "eval" / "summary.json").read_text())
    n_samples = sum(1 for _ in (own_data_run / "runs" / "mine" / "eval" / "results.jsonl").open())
    assert n_samples == 3 * summary["counts"]["problems"] > 0
    assert "<th>exact_match@1</th>" in page and "mine/eval" in page
    assert page.count("<polyline") >= 3  # train loss, eval loss, exact_match@k over k
    data = page.split("id='samples-data'>", 1)[1].split("</script>", 1)[0]
    assert len(json.loads(data.replace("<\\/", "</"))) == n_samples


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "neither a run" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    bad = tmp_path / "eval"
    bad.mkdir()
    (bad / "summary.json").write_text("{}")
    assert cli.main(["report", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "no 'metrics'" in capsys.readouterr().err


def test_generated_code_stays_text(tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "summary.json").write_text(json.dumps({"task": "x", "metrics": {"m@1": 0.5, "m@2": 1.0}}))
    hostile = "</script><script>document.title='owned'</script><b>x</b>"
    (ev / "results.jsonl").write_text(json.dumps({"task_id": "t", "rank": 0, "completion": hostile}) + "\n")
    page = build_report([str(ev)], tmp_path / "r").read_text()
    assert hostile not in page and "<\\/script>" in page


def test_loss_curves_lay_stages_end_to_end():
    log = [{"stage": "a", "step": 10, "split": "train", "loss": 2.0}, {"stage": "b", "step": 5, "split": "train",
           "loss": 1.0}, {"stage": "b", "step": 5, "split": "eval", "loss": float("nan")}]  # fmt: skip
    assert loss_curves(log) == {"train": [(10, 2.0), (15, 1.0)], "eval": []}
    assert "nothing to plot" in svg_chart({"train": []}, "t", "x", "y")


@needs_browser
def test_report_samples_are_browsable_in_chromium(own_data_run, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get((own_data_run / "report" / "index.html").as_uri())
    assert browser.title == "nl2code report"
    total = sum(1 for _ in (own_data_run / "runs" / "mine" / "eval" / "results.jsonl").open())
    seen = []
    count = browser.find_element(By.ID, "count")
    pages = int(count.text.rsplit(" of ", 1)[1])
    assert count.text.startswith(f"{total} of {total} samples")
    for _ in range(pages):  # every sample is reachable page by page
        rows = browser.find_elements(By.CSS_SELECTOR, "tr.sample")
        seen += [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows]
        browser.find_element(By.ID, "next").click()
    assert len(seen) == total
    Select(browser.find_element(By.ID, "f-verdict")).select_by_value("fail")
    fails = browser.find_elements(By.CSS_SELECTOR, "tr.sample")
    assert fails and all("fail" in r.get_attribute("class") for r in fails)
    first = browser.find_element(By.CSS_SELECTOR, "tr.sample").find_elements(By.TAG_NAME, "td")
    assert first[6].text.strip()  # the reference is shown beside the candidate
    browser.find_element(By.ID, "f-text").send_keys(seen[0])
    assert all(seen[0] in r.text for r in browser.find_elements(By.CSS_SELECTOR, "tr.sample"))
