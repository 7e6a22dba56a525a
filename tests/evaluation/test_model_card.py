import json

import yaml

from bertkit.api import train
from bertkit.export import export_model
from conftest import tiny_config, write_toy_sentiment


def test_training_and_export_write_a_model_card(tmp_path, tiny_model_dir):
    train_file, dev_file = write_toy_sentiment(tmp_path)
    result = train(tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "run"), progress=False)
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "bertkit" and front["pipeline_tag"] == "text-classification"
    assert front["base_model"] == str(tiny_model_dir)
    metrics = {m["type"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]}
    assert metrics["accuracy"] == round(result.metrics["accuracy"], 4)
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["data"]["train"]["sha256"][:16] in card and "240 rows" in card
    assert "`negative`, `positive`" in card and "| lr | 0.005 |" in card and "## Intended use and limits" in card
    out = export_model(tmp_path / "run", tmp_path / "export")
    assert "Hugging Face model directory" in (out / "README.md").read_text()
