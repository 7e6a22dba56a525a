"""The command line's flags come from the config's fields, and every flag a message names exists."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
from pathlib import Path

import pytest

from bertkit.cli import build_parser, config_flags, main, with_flags
from bertkit.config import RunConfig, task_config, task_configs
from bertkit.errors import ConfigError

SRC = Path(__file__).resolve().parents[1] / "src" / "bertkit"
# Flags of other programs that bertkit's messages quote (accelerate launch, uvicorn).
OTHER_PROGRAMS = {"--multi_gpu", "--factory"}


def _all_flags(parser: argparse.ArgumentParser) -> set[str]:
    flags = set()
    for action in parser._actions:
        flags.update(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= _all_flags(sub)
    return flags


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string literal of a module (f-string parts included), with its line."""
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_every_flag_named_anywhere_in_the_package_exists():
    flags = _all_flags(build_parser())
    unknown = []
    for path in sorted(SRC.rglob("*.py")):
        for line, text in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9]", text):
                if flag not in flags and flag not in OTHER_PROGRAMS:
                    unknown.append(f"{path.relative_to(SRC)}:{line}: {flag}")
    assert not unknown, "messages name flags the parser does not have:\n" + "\n".join(unknown)


def test_every_config_setting_has_exactly_one_train_flag():
    keys = [row.key for row in config_flags()]
    expected = ["out", "resume"] + [f"{s}.{f.name}" for s in ("data", "model", "train")
                                    for f in dataclasses.fields(getattr(RunConfig(), s))]
    expected += sorted({f"task.{f.name}" for cls in task_configs().values() for f in dataclasses.fields(cls)})
    assert sorted(keys) == sorted(expected)
    assert {"task.stride", "task.doc_stride", "task.problem", "task.mlm_probability"} <= set(keys)
    flags = [row.flag for row in config_flags()]
    assert len(flags) == len(set(flags))
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert set(flags) <= _all_flags(train)


def test_flags_set_the_fields_they_are_generated_from():
    args = build_parser().parse_args(["train", "--patience", "3", "--no-length-grouping", "--strict-entities",
                                      "--model", "m", "--task", "ner", "--stride", "64", "--log-every", "5"])
    overrides = {row.key: getattr(args, row.key) for row in config_flags() if getattr(args, row.key) is not None}
    cfg = RunConfig().with_overrides(overrides)
    assert cfg.train.early_stopping_patience == 3 and cfg.train.length_grouping is False
    assert cfg.task.strict is True and cfg.model.name == "m" and cfg.task.stride == 64
    assert cfg.train.log_every == 5


def test_a_setting_of_another_task_is_refused_with_its_flag(tmp_path, capsys):
    data = tmp_path / "t.csv"
    data.write_text("text,label\na,x\nb,y\n", encoding="utf-8")
    code = main(["train", "--train", str(data), "--out", str(tmp_path / "run"), "--doc-stride", "64"])
    err = capsys.readouterr().err
    assert code == 2 and "--doc-stride (task.doc_stride) is a setting of the qa task, not of classification" in err
    assert not (tmp_path / "run").exists()


def test_task_options_live_with_their_task_and_old_configs_still_load():
    from bertkit.tasks.ner import NerConfig
    from bertkit.tasks.qa import QaConfig

    assert task_configs()["ner"] is NerConfig and task_configs()["qa"] is QaConfig
    # A config written when the task section held every task's options (at their defaults) still loads.
    old = {"task": {"name": "qa", "problem": "auto", "stride": 32, "mlm_probability": 0.15, "doc_stride": 64}}
    cfg = RunConfig.from_dict(old)
    assert isinstance(cfg.task, QaConfig) and cfg.task.doc_stride == 64 and not hasattr(cfg.task, "stride")
    assert "task.n_best must be at least 1" in str(pytest.raises(ConfigError, task_config, "qa", n_best=0).value)


def test_pretrain_leaves_out_the_settings_of_other_tasks():
    pretrain = build_parser()._subparsers._group_actions[0].choices["pretrain"]
    flags = _all_flags(pretrain)
    assert {"--mlm-probability", "--whole-word-masking", "--lr"} <= flags
    assert not {"--problem", "--tag-scheme", "--doc-stride", "--packing", "--distill-from"} & flags


def test_task_flags_name_their_tasks_in_the_help():
    rows = {row.key: row for row in config_flags()}
    assert rows["task.stride"].tasks == ("ner",) and rows["task.problem"].tasks == ("classification",)
    assert rows["task.name"].tasks is None


def test_messages_of_lower_layers_show_the_matching_flag():
    assert with_flags("train.lr must be positive, got -1") == "--lr (train.lr) must be positive, got -1"
    assert with_flags("stop sooner with train.early_stopping_patience") == \
        "stop sooner with --patience (train.early_stopping_patience)"
    assert with_flags("set resume to continue it") == "set --resume to continue it"
    assert with_flags("(--set task.answer_mismatch=reject refuses them)") == \
        "(--set task.answer_mismatch=reject refuses them)"
    assert with_flags("unknown key 'train.nope'") == "unknown key 'train.nope'"


@pytest.mark.parametrize("argv, shown", [
    (["--lr", "-1"], "--lr (train.lr) must be positive"),
    (["--epochs", "many"], "--epochs (train.epochs) must be float"),
    (["--scheduler", "steep"], "--scheduler (train.scheduler) 'steep' is not valid"),
])
def test_bad_values_end_in_one_line_naming_the_flag(argv, shown, capsys, tmp_path):
    code = main(["train", "--train", str(tmp_path / "t.csv"), "--out", str(tmp_path / "run"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and shown in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
