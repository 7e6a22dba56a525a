"""Damaged or incomplete model directories fail with one line naming the file, never a traceback or silently
wrong predictions: checked on load (predict, evaluate, serve, --model, --init-from) and before export."""

import pickle
import shutil

import pytest

from bertkit.cli import main
from bertkit.errors import ModelLoadError
from bertkit.inference.predictor import Predictor
from bertkit.models.loading import CHECKSUMS, verify_model_dir


@pytest.fixture
def run(toy_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(toy_run[0], copy)
    return copy


def test_a_missing_tokenizer_file_is_refused_not_replaced_by_a_fallback(run, capsys):
    (run / "model" / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match=r"model/tokenizer.json: missing \(it was saved with the model\)"):
        Predictor.from_run(run)
    assert main(["predict", str(run), "--text", "a fine film"]) == 2
    err = capsys.readouterr().err
    assert "tokenizer.json: missing" in err and "Traceback" not in err


DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "random": lambda data: bytes(range(256)) * 8,
    "a renamed pickle": lambda data: pickle.dumps({"weight": [1.0, 2.0]}),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_weights_are_refused_everywhere(damage, run, tmp_path, toy_files, capsys):
    weights = run / "model" / "model.safetensors"
    weights.write_bytes(DAMAGE[damage](weights.read_bytes()))
    assert main(["predict", str(run), "--text", "a fine film"]) == 2
    assert "content changed since the model was saved" in capsys.readouterr().err
    assert main(["export", str(run), "--out", str(tmp_path / "exported")]) == 2
    assert not (tmp_path / "exported").exists()
    capsys.readouterr()
    # A model directory without bertkit's checksums (a plain one given as --model): its header is checked.
    (run / "model" / CHECKSUMS).unlink()
    argv = ["train", "--train", str(toy_files[0]), "--label-column", "sentiment", "--model", str(run / "model"),
            "--out", str(tmp_path / "new"), "--max-steps", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "model.safetensors: not a readable safetensors file" in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()


def test_an_intact_run_verifies_and_its_export_carries_checksums(run, tmp_path):
    assert Predictor.from_run(run).predict(["a fine film"])
    assert main(["export", str(run), "--out", str(tmp_path / "exported")]) == 0
    assert (tmp_path / "exported" / CHECKSUMS).is_file()
    verify_model_dir(tmp_path / "exported")  # the card is written before the checksums: they agree
    (tmp_path / "exported" / "tokenizer.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="tokenizer.json: its content changed"):
        verify_model_dir(tmp_path / "exported")
