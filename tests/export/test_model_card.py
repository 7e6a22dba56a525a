import json

import pytest
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
    lengths = env["data"]["lengths"]["train"]
    assert (f"- input length (tokens): median {lengths['median']}, 90th percentile {lengths['p90']}" in card
            and "longer than the window is read whole in overlapping windows of 64 tokens" in card)
    out = export_model(tmp_path / "run", tmp_path / "export")
    assert "Hugging Face model directory" in (out / "README.md").read_text()


def test_the_model_card_is_written_before_the_run_is_marked_completed(tmp_path, tiny_model_dir, monkeypatch):
    import bertkit.api as api
    from bertkit.run_dir import RunDir
    from conftest import tiny_config, write_toy_sentiment

    seen = []

    def card(run_dir):
        seen.append(RunDir(run_dir).status()["status"])
        raise OSError(28, "No space left on device", str(run_dir / "model" / "README.md"))

    monkeypatch.setattr(api, "write_model_card", card)
    train_file, dev_file = write_toy_sentiment(tmp_path)
    with pytest.raises(OSError):
        api.train(tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "run", **{"train.max_steps": 3}),
                  progress=False)
    assert seen == ["running"] and RunDir(tmp_path / "run").status()["status"] == "interrupted"
