import pytest

from bertkit.config import RunConfig, load_config
from bertkit.errors import ConfigError


def test_defaults_then_yaml_then_flags(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("train:\n  lr: 1.0e-4\n  epochs: 2\ndata:\n  text_column: sentence\n", encoding="utf-8")
    cfg = load_config(p)
    assert cfg.train.lr == 1e-4 and cfg.train.epochs == 2 and cfg.train.batch_size is None
    cfg = cfg.with_overrides({"train.lr": "3e-5", "train.batch_size": None, "data.label_column": "y"})
    assert cfg.train.lr == 3e-5 and cfg.train.epochs == 2 and cfg.data.label_column == "y"


def test_unknown_keys_name_the_key_and_list_valid_ones(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  learning_rate: 0.1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"train.learning_rate.*valid: .*lr"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"unknown key 'train.lrr'; valid: .*lr"):
        RunConfig().with_overrides({"train.lrr": 1})


@pytest.mark.parametrize("key,value,pattern", [
    ("train.batch_size", "many", "train.batch_size must be int"),
    ("train.precision", "fp8", "choose one of auto, bf16, fp16, fp32"),
    ("train.batch_size", 0, "at least 1"),
    ("data.dev_fraction", 1.5, "dev_fraction"),
    ("task.doc_stride", -5, "task.doc_stride must be >= 0"),
    ("task.n_best", 0, "task.n_best must be at least 1"),
    ("task.max_answer_length", 0, "task.max_answer_length must be at least 1"),
])
def test_wrong_values_are_rejected(key, value, pattern):
    task = {"task.name": "qa"} if key.startswith("task.") else {}
    with pytest.raises(ConfigError, match=pattern):
        RunConfig().with_overrides({**task, key: value})


def test_round_trip_through_dict():
    cfg = RunConfig().with_overrides({"train.max_steps": 5, "data.text_pair_column": "b", "task.threshold": 0.3})
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_yaml_alias_bombs_are_refused_before_they_expand(tmp_path):
    import time

    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    levels += [f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(8)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\n", encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb.yaml: its aliases \(\*name\) expand it to [\d,]+ values") as info:
        load_config(bomb)
    assert time.perf_counter() - start < 2 and len(str(info.value)) < 400
    recursive = tmp_path / "loop.yaml"
    recursive.write_text("train: &t [*t]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="refers to the value that contains it"):
        load_config(recursive)
    few = tmp_path / "few.yaml"  # a few aliases are fine
    few.write_text("data: &d {text_column: review}\ntrain: {lr: 1.0e-4}\n", encoding="utf-8")
    assert load_config(few).data.text_column == "review"


def test_echoed_values_are_cut_short():
    with pytest.raises(ConfigError) as info:
        RunConfig().with_overrides({"train.batch_size": "x" * 100_000})
    assert len(str(info.value)) < 300 and "100,002 chars" in str(info.value)


def test_an_empty_run_config_is_a_damaged_run_not_the_defaults(tmp_path):
    from bertkit.errors import CheckpointError
    from bertkit.run_dir import RunDir

    (tmp_path / "config.yaml").write_bytes(b"")
    with pytest.raises(CheckpointError, match="config.yaml: empty or not a mapping; the run directory is damaged"):
        RunDir(tmp_path).load_config()
