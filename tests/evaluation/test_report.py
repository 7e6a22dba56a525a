"""The run report: calibration maths against reference computations, the diagnosis on known curves, the
HTML a run writes, and (with Chromium) that its plots render."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from bertkit.evaluation.diagnosis import diagnose
from bertkit.evaluation.report import render_report
from bertkit.inference.predictor import Predictor
from bertkit.tasks.calibration import expected_calibration_error, fit_temperature, reliability, softmax
from bertkit.tasks.metrics import per_class_scores
from conftest import toy_sentiment


def _ece_reference(probs, labels, n_bins=15):
    """ECE as Guo et al. define it, one bin at a time: bins (lo, hi], the first also takes 0."""
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inside = (conf > lo) & (conf <= hi) if b else (conf >= lo) & (conf <= hi)
        if inside.any():
            total += inside.sum() / len(conf) * abs((pred[inside] == labels[inside]).mean() - conf[inside].mean())
    return total


def test_ece_matches_the_binwise_definition():
    rng = np.random.default_rng(0)
    for _ in range(20):
        probs = softmax(rng.normal(size=(300, 4)) * rng.uniform(0.5, 4))
        labels = rng.integers(0, 4, 300)
        assert expected_calibration_error(probs, labels) == pytest.approx(_ece_reference(probs, labels), abs=1e-12)
    bins = reliability(np.array([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6]]), np.array([1, 1, 1]), n_bins=5)
    assert bins.count.tolist() == [0, 0, 1, 1, 1] and bins.accuracy[2:].tolist() == [1.0, 1.0, 0.0]


def test_temperature_scaling_recovers_the_temperature_of_overconfident_logits():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(size=(4000, 3)) * 2
    labels = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])  # calibrated by construction
    for t_true in (0.5, 2.5):
        seen = true_logits * t_true  # under-confident (T < 1) or over-confident (T > 1)
        t = fit_temperature(seen, labels)
        assert t == pytest.approx(t_true, rel=0.08)
        assert expected_calibration_error(softmax(seen, t), labels) < expected_calibration_error(softmax(seen), labels)


def test_per_class_scores_match_scikit_learn():
    rng = np.random.default_rng(2)
    gold, pred = rng.integers(0, 4, 200), rng.integers(0, 3, 200)  # class 3 is never predicted
    ours = np.array(per_class_scores(gold, pred, 4))
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=range(4), zero_division=0)
    assert np.allclose(ours[:, 0], p) and np.allclose(ours[:, 1], r) and np.allclose(ours[:, 2], f)
    assert ours[:, 3].tolist() == s.tolist()


def _curve(dev_metric, dev_loss, train_loss, every=10):
    records = []
    for i, (m, dl, tl) in enumerate(zip(dev_metric, dev_loss, train_loss), start=1):
        records.append({"kind": "train", "step": i * every, "loss": tl, "lr": 1e-4})
        records.append({"kind": "eval", "step": i * every, "dev_accuracy": m, "dev_loss": dl})
    return records


def test_diagnosis_reads_overfitting_a_growing_gap_and_under_training():
    overfit = _curve([0.80, 0.86, 0.88, 0.85, 0.83], [0.50, 0.40, 0.38, 0.50, 0.70], [0.60, 0.35, 0.20, 0.08, 0.02])
    kinds = {f.kind: f for f in diagnose(overfit, "accuracy", True, 30)}
    assert {"overfitting", "growing_gap"} <= set(kinds)
    assert "step 30 (0.8800)" in kinds["overfitting"].what
    assert "--patience 2" in kinds["overfitting"].advice
    rising = _curve([0.70, 0.78, 0.84], [0.6, 0.5, 0.42], [0.65, 0.5, 0.4])
    assert [f.kind for f in diagnose(rising, "accuracy", True, 30)] == ["still_improving"]
    two_epochs = _curve([0.807, 0.825], [0.42, 0.39], [0.45, 0.38])  # one evaluation per epoch, still rising
    assert [f.kind for f in diagnose(two_epochs, "accuracy", True, 20)] == ["still_improving"]
    flat = _curve([0.5, 0.5, 0.5, 0.5], [0.69] * 4, [0.693, 0.692, 0.693, 0.692])
    assert "stuck" in {f.kind for f in diagnose(flat, "accuracy", True, 10)}
    level = _curve([0.80, 0.85, 0.86, 0.86], [0.5, 0.4, 0.38, 0.38], [0.6, 0.4, 0.35, 0.34])
    assert [f.kind for f in diagnose(level, "accuracy", True, 30)] == ["healthy"]
    assert [f.kind for f in diagnose(level, "accuracy", True, 30, dev_rows=500, steps=400, majority=0.5)] == [
        "healthy"]


def test_diagnosis_sees_small_data_instead_of_calling_it_healthy():
    level = _curve([0.50, 0.55, 0.56, 0.56], [0.7, 0.68, 0.67, 0.67], [0.7, 0.6, 0.55, 0.54], every=1)
    kinds = {f.kind: f for f in diagnose(level, "accuracy", True, 3, dev_rows=6, steps=4, majority=0.55)}
    assert set(kinds) == {"small_dev", "few_steps", "majority"}
    assert "6 examples" in kinds["small_dev"].what and "4 optimiser steps" in kinds["few_steps"].what
    assert "commonest class (0.5500)" in kinds["majority"].what


def test_a_run_writes_its_report_and_calibrated_model(toy_run):
    run = toy_run[0]
    page = (run / "report.html").read_text(encoding="utf-8")
    assert page == render_report(run)  # the command gives what training wrote
    assert page.count("<svg") == 5  # curves, learning rate and throughput, confusion matrix, reliability, lengths
    for heading in ("Learning curves", "Diagnosis", "Learning rate and throughput", "Confusion matrix", "Per class",
                    "Calibration", "Highest-loss dev examples", "Input lengths"):
        assert heading in page
    # the dev score by input length: the toy sentences all fit the tiny model's 64 positions
    dev_accuracy = json.loads((run / "results.json").read_text())["dev"]["accuracy"]
    assert re.search(rf"<td>1-64</td><td>60</td><td>{dev_accuracy:.4f}</td><td>yes</td>", page), \
        re.findall(r"<h3>Input lengths</h3>.*?</table>", page, re.S)
    assert "0.0 % of the training inputs are longer than the window of 64 tokens" in page
    assert "<script" not in page and not re.search(r'(src|href)="(https?:)?//', page)  # opens offline
    results = json.loads((run / "results.json").read_text())
    cal = results["calibration"]
    assert f"<b>{cal['ece_before']:.4f}</b> before and <b>{cal['ece_after']:.4f}</b> after" in page
    assert cal["ece_after"] <= cal["ece_before"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all("dev_loss" in r for r in records if r["kind"] == "eval")

    # The temperature is folded into the saved model: its probabilities are softmax(raw logits / T).
    with np.load(run / "dev_outputs.npz") as data:
        raw = data["outputs"]
    examples = [json.loads(line) for line in (run / "dev_examples.jsonl").read_text().splitlines()]
    predictions = Predictor.from_run(run, precision="fp32").predict([ex["text"] for ex in examples])
    labels = json.loads((run / "labels.json").read_text())["labels"]
    ours = np.array([[p["probabilities"][name] for name in labels] for p in predictions])
    assert np.allclose(ours, softmax(raw, cal["temperature"]), atol=1e-4)


def test_report_of_a_regression_run_and_of_a_run_without_outputs(tmp_path, tiny_model_dir, toy_run):
    from bertkit.api import train
    from conftest import tiny_config, write_csv

    rows = [(t, f"{(0.9 if s == 'positive' else 0.1) + 0.01 * (i % 7):.2f}") for i, (t, s) in
            enumerate(toy_sentiment(120, seed=4))]
    train_file = write_csv(tmp_path / "train.csv", ["text", "sentiment"], rows[:100])
    dev_file = write_csv(tmp_path / "dev.csv", ["text", "sentiment"], rows[100:])
    train(tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "reg", **{"train.max_steps": 20}),
          progress=False)
    page = (tmp_path / "reg" / "report.html").read_text()
    assert "Predictions against gold" in page and "Largest errors on dev" in page and "Calibration" not in page

    old = tmp_path / "old"
    shutil.copytree(toy_run[0], old)
    (old / "dev_outputs.npz").unlink()
    assert "saved no dev outputs" in render_report(old)


def _chrome():
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        pytest.skip("chromium and chromedriver are not installed (scripts/setup-browser.sh installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1200,900"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def test_the_report_renders_in_a_headless_browser(toy_run):
    driver = _chrome()
    try:
        driver.get((toy_run[0] / "report.html").as_uri())
        plots = driver.execute_script("""
            return [...document.querySelectorAll('figure.plot svg')].map(svg => {
              const box = svg.getBoundingClientRect();
              const drawn = [...svg.querySelectorAll('path, image, use')].filter(p => p.getBBox().width > 0).length;
              return {width: box.width, height: box.height, drawn: drawn,
                      text: [...svg.querySelectorAll('text')].map(t => t.textContent).join(' ')};
            });""")
        assert len(plots) == 5
        assert all(p["width"] > 200 and p["height"] > 150 and p["drawn"] > 5 for p in plots), [
            (p["width"], p["height"], p["drawn"]) for p in plots]
        assert "Dev accuracy" in plots[0]["text"] and "step" in plots[0]["text"]
        assert "Confusion matrix" in plots[2]["text"] and "Reliability" in plots[3]["text"]
        assert "Training input lengths" in plots[4]["text"] and "window: 64 tokens" in plots[4]["text"]
        assert driver.execute_script("return document.querySelectorAll('table tbody tr').length") > 10
    finally:
        driver.quit()


def test_runs_list_and_compare(tmp_path, tiny_model_dir, toy_run, capsys):
    from bertkit.api import train
    from bertkit.cli import main
    from conftest import tiny_config, write_toy_sentiment

    train_file, dev_file = write_toy_sentiment(tmp_path)
    train(tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "runs" / "slow", **{"train.lr": 1e-4,
                                                                                            "train.max_steps": 20}),
          progress=False)
    shutil.copytree(toy_run[0], tmp_path / "runs" / "group" / "fast")
    (tmp_path / "runs" / "not-a-run").mkdir()
    assert main(["runs", "list", str(tmp_path / "runs"), "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(s["run"]).name for s in listed] == ["fast", "slow"]
    assert all(s["status"] == "completed" and s["metric"] == "accuracy" for s in listed)

    runs = [str(tmp_path / "runs" / "group" / "fast"), str(tmp_path / "runs" / "slow")]
    html_file = tmp_path / "compare.html"
    assert main(["runs", "compare", *runs, "--report", str(html_file), "--json"]) == 0
    table = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert table["differences"]["train.lr"] == [5e-3, 1e-4] and table["differences"]["train.max_steps"] == [60, 20]
    assert "data.train" in table["differences"] and "out" not in table["differences"]
    page = html_file.read_text()
    assert page.count("<svg") == 1 and "train.lr" in page and "fast" in page and "slow" in page
    assert main(["runs", "compare", *runs]) == 0
    assert "train.lr" in capsys.readouterr().out

    # One damaged run does not hide the others: it is listed as damaged, with what is wrong.
    (tmp_path / "runs" / "slow" / "config.yaml").write_text("task: [unclosed\n", encoding="utf-8")
    assert main(["runs", "list", str(tmp_path / "runs")]) == 0
    out, err = capsys.readouterr()
    assert "fast" in out and "completed" in out and "damaged" in out
    assert "slow is damaged: " in err and "config.yaml" in err


def test_best_checkpoint_and_early_stop_are_marked(tmp_path, toy_files, tiny_model_dir):
    from bertkit.api import train
    from conftest import tiny_config

    cfg = tiny_config(tiny_model_dir, *toy_files, tmp_path / "run", **{
        "train.max_steps": 100, "train.eval_every": 2, "train.early_stopping_patience": 2,
        "train.scheduler": "constant", "train.lr": 1e-12})  # the dev metric never improves after step 2
    result = train(cfg, progress=False)
    page = (tmp_path / "run" / "report.html").read_text()
    assert result.steps == 6 and "early stop (step 6)" in page and "best checkpoint (step 2)" in page
    assert "steps</td><td>6 (best 2)" in page
