"""ONNX export (fp32 and int8) and PyTorch dynamic int8: parity with the run, and every command on them."""

import json

import pytest

from bertkit.api import evaluate, predict, train
from bertkit.cli import main
from bertkit.errors import ConfigError
from bertkit.export import export_onnx
from bertkit.inference.predictor import Predictor
from conftest import tiny_config, toy_sentiment, write_toy_sentiment

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def run(toy_run):
    return toy_run


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "fp32"
    assert main(["export", str(run[0]), "--out", str(out), "--format", "onnx"]) == 0
    return out


def test_fp32_export_matches_the_run(run, exported):
    manifest = json.loads((exported / "bertkit-export.json").read_text())
    parity = manifest["parity"]
    assert parity["examples"] == 60 and parity["agreement"] >= 0.995
    assert parity["export"] == pytest.approx(parity["torch"], abs=1e-6)
    card = (exported / "README.md").read_text()
    assert "ONNX (ONNX Runtime)" in card and "100.00% same decisions on 60 examples" in card
    texts = [t for t, _ in toy_sentiment(30, seed=11)]
    ours, theirs = Predictor.from_run(run[0], precision="fp32").predict(texts), predict(exported, texts)
    assert [o["label"] for o in ours] == [t["label"] for t in theirs]
    assert max(abs(o["score"] - t["score"]) for o, t in zip(ours, theirs)) < 1e-4
    assert evaluate(exported, run[1])["accuracy"] == pytest.approx(evaluate(run[0], run[1])["accuracy"])
    long = [" ".join(["the movie plot was very quite and it is a film"] * 9) + ending
            for ending in (" awful bad", " superb great")]  # past the 64 positions: read in windows
    ours, theirs = Predictor.from_run(run[0], precision="fp32").predict(long), predict(exported, long)
    assert [o["windows"] for o in ours] == [t["windows"] for t in theirs] and ours[0]["windows"] > 1
    assert max(abs(o["score"] - t["score"]) for o, t in zip(ours, theirs)) < 1e-4


def test_predict_and_evaluate_commands_take_an_export_folder(run, exported, capsys):
    assert main(["predict", str(exported), "--text", "a lovely warm film"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("positive", "negative")
    assert main(["evaluate", str(exported), "--data", str(run[1]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] >= 0.9


def test_int8_export_is_smaller_and_reports_its_accuracy(run, exported, tmp_path, capsys):
    out = tmp_path / "int8"
    assert main(["export", str(run[0]), "--out", str(out), "--format", "onnx", "--quantize", "int8"]) == 0
    assert "parity on 60 examples" in capsys.readouterr().out
    manifest = json.loads((out / "bertkit-export.json").read_text())
    assert manifest["quantize"] == "int8" and manifest["parity"]["export"] >= 0.8
    import onnx

    ops = {node.op_type for node in onnx.load(str(out / "model.onnx")).graph.node}
    assert "DynamicQuantizeLinear" in ops and ("MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops)
    assert (out / "model.onnx").stat().st_size < (exported / "model.onnx").stat().st_size
    assert not list(tmp_path.glob(".*tmp"))


def test_torch_dynamic_int8_predicts_like_the_run(run):
    texts = [t for t, _ in toy_sentiment(40, seed=12)]
    quantized = Predictor.from_run(run[0], quantize="int8")
    assert any("quantized" in type(m).__module__ for m in quantized.model.modules())
    ours = [p["label"] for p in Predictor.from_run(run[0], precision="fp32").predict(texts)]
    theirs = [p["label"] for p in quantized.predict(texts)]
    assert sum(a == b for a, b in zip(ours, theirs)) >= 0.9 * len(texts)
    assert evaluate(run[0], run[1], quantize="int8")["accuracy"] >= 0.85


def test_export_refuses_bad_requests(run, exported, tmp_path, capsys):
    with pytest.raises(ConfigError, match="not an empty folder"):
        export_onnx(run[0], exported)
    before = sum(f.stat().st_size for f in run[0].rglob("*") if f.is_file())
    for out, fmt in ((run[0] / "model" / "inner", "hf"), (run[0] / "exports" / "x", "onnx"), (run[0], "hf"),
                     (run[0].parent, "hf")):
        assert main(["export", str(run[0]), "--out", str(out), "--format", fmt]) == 2, (out, fmt)
        err = capsys.readouterr().err
        assert "inside the run directory" in err or "holds the run directory" in err, err
    assert not (run[0] / "model" / "inner").exists() and not (run[0] / "exports").exists()
    assert sum(f.stat().st_size for f in run[0].rglob("*") if f.is_file()) == before  # nothing copied in
    assert main(["export", str(run[0]), "--out", str(tmp_path / "x"), "--quantize", "int8"]) == 2
    with pytest.raises(ConfigError, match="quantised when exported"):
        Predictor.from_path(exported, quantize="int8")


def test_a_lora_run_is_merged_into_the_export(tmp_path, tiny_model_dir):
    train_file, dev_file = write_toy_sentiment(tmp_path)
    cfg = tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "lora", **{"model.lora_r": 4})
    train(cfg, progress=False)
    out, manifest = export_onnx(tmp_path / "lora", tmp_path / "onnx")
    assert manifest["parity"]["agreement"] >= 0.995
    texts = [t for t, _ in toy_sentiment(10, seed=13)]
    ours = Predictor.from_run(tmp_path / "lora", precision="fp32").predict(texts)
    assert [p["label"] for p in predict(out, texts)] == [p["label"] for p in ours]
