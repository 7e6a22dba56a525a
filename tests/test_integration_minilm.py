"""The real embedded MiniLM-L6 on real SST-2 sentences bundled in data/sst2: a short fine-tune must learn."""

import csv
import gzip
import json

from bertkit.api import train
from bertkit.config import RunConfig
from bertkit.inference.predictor import Predictor
from conftest import REPO, write_csv


def test_minilm_learns_sst2_from_a_few_hundred_sentences(tmp_path):
    with gzip.open(REPO / "data" / "sst2" / "train_20k.csv.gz", "rt", encoding="utf-8") as fh:
        rows = [tuple(r) for r in csv.reader(fh)][1:]
    with open(REPO / "data" / "sst2" / "dev.csv", encoding="utf-8") as fh:
        dev_rows = [tuple(r) for r in csv.reader(fh)][1:]
    train_file = write_csv(tmp_path / "train.csv", ["sentence", "label"], rows[:960])
    dev_file = write_csv(tmp_path / "dev.csv", ["sentence", "label"], dev_rows[:200])
    cfg = RunConfig().with_overrides({
        "out": str(tmp_path / "run"), "data.train": str(train_file), "data.dev": str(dev_file),
        "data.text_column": "sentence", "train.max_steps": 60, "train.batch_size": 16, "train.lr": 1e-4,
        "train.eval_every": 30, "train.seed": 1})
    result = train(cfg, progress=False)
    assert result.metrics["accuracy"] >= 0.7  # chance is 0.5; 0.735-0.77 over seeds 1-4
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["data"]["train"]["rows"] == 960
    predictor = Predictor.from_run(tmp_path / "run")
    pos, neg = predictor.predict(["a gorgeous , witty , seductive movie .", "the worst film of the year ."])
    assert (pos["label"], neg["label"]) == ("positive", "negative")
