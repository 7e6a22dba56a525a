"""Transfer end to end through the command line on the tiny model: pre-train -> fine-tune -> lineage,
pipelines, LoRA with export, distillation, freezing."""

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertkit.cli import main
from bertkit.errors import ConfigError
from conftest import toy_sentiment, write_csv, write_toy_sentiment

# The tiny model's word embeddings are random: they train here (see conftest.tiny_config).
COMMON = ["--precision", "fp32", "--quiet", "--seed", "1", "--batch-size", "16", "--no-freeze-embeddings"]


def _train(*argv):
    method = [] if "--task" in argv or "--method" in argv else ["--method", "standard"]  # toy sets: not few-shot
    assert main(["train", *argv, *COMMON, *method]) == 0


def _json(path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_model_dir):
    """Toy data, a pre-training run and a fine-tuned run started from it (shared by the tests here)."""
    tmp = tmp_path_factory.mktemp("transfer")
    train, dev = write_toy_sentiment(tmp)
    corpus = tmp / "corpus.txt"
    corpus.write_text("".join(t + "\n" for t, _ in toy_sentiment(400, seed=5)), encoding="utf-8")
    assert main(["pretrain", "--train", str(corpus), "--dev-fraction", "0.1", "--out", str(tmp / "mlm"),
                 "--model", str(tiny_model_dir), "--max-steps", "60", "--lr", "5e-3", "--eval-every", "20",
                 "--whole-word-masking", *COMMON]) == 0
    _train("--train", str(train), "--dev", str(dev), "--label-column", "sentiment", "--out", str(tmp / "cls"),
           "--init-from", str(tmp / "mlm"), "--max-steps", "60", "--lr", "5e-3", "--eval-every", "20")
    return tmp, train, dev


def test_pretraining_lowers_dev_perplexity_and_records_masking(work):
    tmp, _, _ = work
    evals = [json.loads(line) for line in (tmp / "mlm" / "metrics.jsonl").read_text().splitlines()
             if '"eval"' in line]
    vocabulary = _json(tmp / "mlm" / "labels.json")["vocab_size"]  # an untrained head: perplexity ~ vocabulary
    assert evals[-1]["dev_perplexity"] < min(evals[0]["dev_perplexity"], vocabulary / 5)
    assert _json(tmp / "mlm" / "labels.json")["whole_word_masking"] is True
    assert _json(tmp / "mlm" / "model" / "config.json")["architectures"] == ["BertForMaskedLM"]


def test_fine_tune_from_a_pretraining_run_records_its_parent(work, tiny_model_dir, capsys):
    tmp, _, _ = work
    lineage = _json(tmp / "cls" / "lineage.json")
    parent = lineage["parent"]
    assert parent["kind"] == "run" and parent["path"] == str((tmp / "mlm").resolve()) and parent["task"] == "mlm"
    assert parent["config_sha256"] == hashlib.sha256((tmp / "mlm" / "config.yaml").read_bytes()).hexdigest()
    assert parent["data"]["train"]["rows"] == 400 and parent["data"]["dev"]["rows"] == 40
    assert len(parent["data"]["train"]["sha256"]) == 64
    assert lineage["base_model"] == str(tiny_model_dir)
    assert lineage["init"] == {**lineage["init"], "encoder": "kept", "head": "new (the parent was trained for mlm)"}
    assert _json(tmp / "cls" / "results.json")["dev"]["accuracy"] >= 0.9

    capsys.readouterr()
    assert main(["lineage", str(tmp / "cls"), "--json"]) == 0
    chain = json.loads(capsys.readouterr().out)
    assert [c.get("task") for c in chain[:2]] == ["classification", "mlm"]
    assert chain[-1] == {"base_model": str(tiny_model_dir)}
    assert main(["lineage", str(tmp / "cls")]) == 0
    text = capsys.readouterr().out
    assert "<- " + str((tmp / "mlm").resolve()) in text and "[base model]" in text


def test_same_task_and_labels_keep_the_head(work, tmp_path):
    """With a learning rate of ~0 the child is its parent: a kept head scores as well at once."""
    tmp, train, dev = work
    _train("--train", str(train), "--dev", str(dev), "--label-column", "sentiment", "--out", str(tmp_path / "child"),
           "--init-from", str(tmp / "cls"), "--max-steps", "1", "--lr", "1e-12")
    assert _json(tmp_path / "child" / "lineage.json")["init"]["head"] == "kept"
    parent_dev = _json(tmp / "cls" / "results.json")["dev"]
    assert _json(tmp_path / "child" / "results.json")["dev"] == pytest.approx(parent_dev)


def test_other_labels_get_a_new_head_of_their_size(work, tmp_path):
    tmp, _, _ = work
    rows = [(t, {"positive": "up", "negative": "down"}[y] if i % 3 else "flat")
            for i, (t, y) in enumerate(toy_sentiment(90, seed=4))]
    three = write_csv(tmp_path / "three.csv", ["text", "sentiment"], rows)
    _train("--train", str(three), "--label-column", "sentiment", "--out", str(tmp_path / "three"),
           "--init-from", str(tmp / "cls"), "--max-steps", "2")
    init = _json(tmp_path / "three" / "lineage.json")["init"]
    assert init["head"].startswith("new (it was trained for classification (single_label) with labels")
    assert _json(tmp_path / "three" / "model" / "config.json")["id2label"] == {"0": "down", "1": "flat", "2": "up"}


def test_pipeline_runs_stages_in_order_and_skips_completed_ones(work, tiny_model_dir, tmp_path, capsys):
    tmp, train, dev = work
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "corpus.txt").write_text((tmp / "corpus.txt").read_text())
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(f"""
out: runs
defaults:
  model: {{name: {tiny_model_dir}}}
  train: {{precision: fp32, seed: 1, batch_size: 16, lr: 5.0e-3, max_steps: 10, eval_every: 10}}
stages:
  - {{name: dapt, task: {{name: mlm}}, data: {{train: data/corpus.txt}}}}
  - {{name: sentiment, data: {{train: {train}, dev: {dev}, label_column: sentiment}}}}
  - {{name: again, data: {{train: {train}, dev: {dev}, label_column: sentiment}}, train: {{max_steps: 5}}}}
""", encoding="utf-8")
    assert main(["pipeline", str(pipeline), "--quiet"]) == 0
    runs = tmp_path / "runs"
    for name in ("dapt", "sentiment", "again"):
        assert _json(runs / name / "status.json")["status"] == "completed"
    assert _json(runs / "again" / "lineage.json")["parent"]["path"] == str((runs / "sentiment").resolve())
    assert _json(runs / "again" / "lineage.json")["init"]["head"] == "kept"
    capsys.readouterr()
    assert main(["lineage", str(runs / "again"), "--json"]) == 0
    chain = json.loads(capsys.readouterr().out)
    assert [c.get("run") for c in chain[:3]] == [str((runs / n).resolve()) for n in ("again", "sentiment", "dapt")]
    assert chain[3] == {"base_model": str(tiny_model_dir)}
    assert main(["pipeline", str(pipeline), "--quiet"]) == 0  # a rerun after completion trains nothing
    assert capsys.readouterr().out.count("skipped (completed earlier)") == 3


def test_pipeline_config_errors_name_the_stage(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("out: runs\nstages:\n  - {name: a, trian: {lr: 1}}\n", encoding="utf-8")
    assert main(["pipeline", str(bad)]) == 2
    assert "stage 1 (a): unknown key(s) trian" in capsys.readouterr().err
    bad.write_text("out: runs\nstages:\n  - {name: a, train: {lrr: 1}}\n", encoding="utf-8")
    assert main(["pipeline", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "stage 1 (a)" in err and "train.lrr" in err
    for text, message in (("defaults: [1]\nstages: [{name: a}]", "'defaults' must be a mapping"),
                          ("stages: [{name: a, init_from: 5}]", "init_from must be a stage name"),
                          ("stages: [{name: a, init_from: previous}]", "no previous stage"),
                          ("stages: [{name: ../../escape}]", "must be a plain folder name"),
                          ("stages: [{name: /tmp/abs}]", "must be a plain folder name"),
                          ("stages: [{name: ..}]", "must be a plain folder name")):
        bad.write_text(f"out: runs\n{text}\n", encoding="utf-8")
        assert main(["pipeline", str(bad)]) == 2
        assert message in capsys.readouterr().err


def test_pipeline_task_defaults_reach_only_the_stages_whose_task_has_them(tmp_path):
    from bertkit.pipeline import load_pipeline

    spec = tmp_path / "p.yaml"
    spec.write_text("out: runs\ndefaults: {task: {class_weights: auto}}\nstages:\n"
                    "  - {name: dapt, task: {name: mlm}}\n  - {name: cls}\n"
                    "  - {name: bad, task: {name: mlm, class_weights: auto}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"stage 3 \(bad\): task.class_weights is a setting of the classification"):
        load_pipeline(spec)
    spec.write_text(spec.read_text().rsplit("  - {name: bad", 1)[0], encoding="utf-8")
    (dapt, mlm), (_, cls) = load_pipeline(spec)
    assert mlm.task.name == "mlm" and not hasattr(mlm.task, "class_weights") and cls.task.class_weights == "auto"


def test_lora_trains_few_parameters_and_exports_a_merged_model(work, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertkit.inference.predictor import Predictor

    tmp, train, dev = work
    run = tmp_path / "lora"
    _train("--train", str(train), "--dev", str(dev), "--label-column", "sentiment", "--out", str(run),
           "--init-from", str(tmp / "cls"), "--lora-r", "4", "--max-steps", "20", "--lr", "5e-3")
    init = _json(run / "lineage.json")["init"]
    assert init["trainable"] < 0.15 * init["parameters"]
    assert (run / "model" / "adapter_config.json").is_file() and not (run / "model" / "model.safetensors").exists()
    umask = os.umask(0)
    os.umask(umask)
    assert (run / "model" / "adapter_model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask  # as open() makes
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(dev), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(_json(run / "results.json")["dev"])

    assert main(["export", str(run), "--out", str(tmp_path / "plain")]) == 2  # a LoRA run needs --merge
    assert "--merge" in capsys.readouterr().err and not (tmp_path / "plain").exists()
    assert main(["export", str(run), "--out", str(tmp_path / "plain"), "--merge"]) == 0
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "plain").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "plain")
    texts = ["the film was lovely", "a dull and boring plot"]
    with torch.no_grad():
        probs = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits.softmax(-1)
    ours = Predictor.from_run(run, precision="fp32").predict(texts)
    for row, p in zip(probs, ours):
        assert row[model.config.label2id[p["label"]]].item() == pytest.approx(p["score"], abs=1e-4)

    child = tmp_path / "from-lora"  # a LoRA run is a starting point too (merged on the fly)
    _train("--train", str(train), "--dev", str(dev), "--label-column", "sentiment", "--out", str(child),
           "--init-from", str(run), "--max-steps", "1", "--lr", "1e-12")
    assert _json(child / "lineage.json")["parent"]["lora"] is True
    assert _json(child / "results.json")["dev"] == pytest.approx(_json(run / "results.json")["dev"], abs=0.02)


def test_distilled_student_has_fewer_layers_and_learns(work, tmp_path):
    tmp, train, dev = work
    run = tmp_path / "student"
    _train("--train", str(train), "--dev", str(dev), "--label-column", "sentiment", "--out", str(run),
           "--init-from", str(tmp / "cls"), "--num-layers", "1", "--distill-from", str(tmp / "cls"),
           "--distill-temperature", "2", "--max-steps", "40", "--lr", "5e-3")
    assert _json(run / "model" / "config.json")["num_hidden_layers"] == 1
    lineage = _json(run / "lineage.json")
    assert lineage["teacher"]["path"] == str((tmp / "cls").resolve()) and lineage["init"]["layers_kept"] == [0]
    assert _json(run / "results.json")["dev"]["accuracy"] >= 0.9


def test_distillation_checks_task_and_labels(work, tmp_path, capsys):
    tmp, _, dev = work
    rows = [(t, "x" if i % 2 else "y") for i, (t, _) in enumerate(toy_sentiment(60, seed=4))]
    other = write_csv(tmp_path / "other.csv", ["text", "sentiment"], rows)
    assert main(["train", "--train", str(other), "--label-column", "sentiment", "--out", str(tmp_path / "s"),
                 "--init-from", str(tmp / "cls"), "--distill-from", str(tmp / "cls"), "--max-steps", "2",
                 *COMMON]) == 2
    assert "share the label set" in capsys.readouterr().err


def test_the_distillation_loss_matches_its_formula():
    import torch.nn.functional as F

    from bertkit.config import TaskConfig
    from bertkit.tasks import get_task
    from bertkit.training.objectives import Distillation

    task = get_task(TaskConfig())
    task.labels, task.problem = ["a", "b", "c"], "single_label"
    wrapped = Distillation(task, alpha=0.7, temperature=3.0)
    torch.manual_seed(0)
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    labels = torch.tensor([0, 2, 1, 1])
    got = wrapped.loss(student, {"labels": labels, "teacher_logits": teacher})
    p, q = teacher.div(3).softmax(-1), student.div(3).softmax(-1)
    kl = (p * (p.log() - q.log())).sum(-1).mean() * 9
    assert got.item() == pytest.approx((0.7 * kl + 0.3 * F.cross_entropy(student, labels)).item(), rel=1e-5)


def test_freezing_keeps_the_lowest_layers_fixed(work, tmp_path):
    tmp, train, dev = work
    run = tmp_path / "frozen"
    _train("--train", str(train), "--dev", str(dev), "--label-column", "sentiment", "--out", str(run),
           "--init-from", str(tmp / "cls"), "--freeze-layers", "1", "--max-steps", "5", "--lr", "5e-3")
    before = load_file(str(tmp / "cls" / "model" / "model.safetensors"))
    after = load_file(str(run / "model" / "model.safetensors"))
    same = {k for k in before if torch.equal(before[k], after[k])}
    assert {"bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.output.dense.weight"} <= same
    assert "bert.encoder.layer.1.output.dense.weight" not in same


def test_gradual_unfreezing_trains_the_head_first(work, tmp_path):
    tmp, train, dev = work
    run = tmp_path / "gradual"
    _train("--train", str(train), "--dev", str(dev), "--label-column", "sentiment", "--out", str(run),
           "--init-from", str(tmp / "cls"), "--unfreeze-every", "4", "--layer-lr-decay", "0.8",
           "--max-steps", "6", "--lr", "5e-3")
    before = load_file(str(tmp / "cls" / "model" / "model.safetensors"))
    after = load_file(str(run / "model" / "model.safetensors"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "classifier.weight" in changed and "bert.encoder.layer.1.output.dense.weight" in changed  # step 4 on
    assert not any(k.startswith(("bert.encoder.layer.0.", "bert.embeddings.")) for k in changed)


def test_bad_transfer_options_are_one_line_errors(work, tmp_path, capsys):
    tmp, train, dev = work
    base = ["train", "--train", str(train), "--label-column", "sentiment", "--out", str(tmp_path / "x"), *COMMON]
    assert main([*base, "--init-from", str(tmp_path / "nowhere")]) == 2
    assert "no such run or model directory" in capsys.readouterr().err
    assert main([*base, "--init-from", str(tmp / "cls"), "--lora-r", "4", "--freeze-layers", "1"]) == 2
    assert "lora_r" in capsys.readouterr().err
    assert main([*base, "--init-from", str(tmp / "cls"), "--init", "random"]) == 2
    assert not (tmp_path / "x" / "model").exists()
    assert main(["pretrain", "--task", "ner", "--train", str(train), "--out", str(tmp_path / "y")]) == 2
    assert "bertkit pretrain trains the mlm task" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    assert main(["export", str(tmp / "cls"), "--out", str(tmp_path / "a-file")]) == 2
    assert "not an empty folder" in capsys.readouterr().err


def test_the_example_pipeline_resolves_its_stages():
    from bertkit.pipeline import load_pipeline
    from conftest import REPO

    stages = load_pipeline(REPO / "examples" / "transfer_pipeline.yaml")
    (first, mrpc), (second, rte) = stages
    assert (first, second) == ("mrpc", "rte")
    assert mrpc.model.init_from is None and rte.model.init_from == mrpc.out
    assert mrpc.data.text_column == "#1 String" and rte.data.text_column == "sentence1"
    assert rte.train.epochs == 2 and Path(rte.out).name == "rte"


@pytest.mark.parametrize("task", ["ner", "qa"])
def test_every_task_starts_from_a_pretraining_run_with_lora(task, work, tmp_path, capsys):
    """NER and QA heads on the pre-trained encoder, trained as LoRA adapters; the reloaded adapter scores
    exactly what training reported."""
    from conftest import toy_ner, write_conll, write_jsonl
    from evaluation.test_qa_end_to_end import toy_qa

    tmp, _, _ = work
    if task == "ner":
        train, dev = (write_conll(tmp_path / f"{n}.conll", toy_ner(k, seed=s)) for n, k, s in
                      (("train", 60, 1), ("dev", 20, 2)))
    else:
        train, dev = (write_jsonl(tmp_path / f"{n}.jsonl", toy_qa(k, seed=s)) for n, k, s in
                      (("train", 60, 1), ("dev", 20, 2)))
    run = tmp_path / "run"
    assert main(["train", "--task", task, "--train", str(train), "--dev", str(dev), "--out", str(run),
                 "--init-from", str(tmp / "mlm"), "--lora-r", "4", "--max-steps", "4", "--max-length", "32",
                 *COMMON]) == 0
    lineage = _json(run / "lineage.json")
    assert lineage["parent"]["task"] == "mlm" and lineage["init"]["head"].startswith("new")
    assert lineage["init"]["trainable"] < lineage["init"]["parameters"] / 4
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(dev), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(_json(run / "results.json")["dev"])


def test_pretrain_takes_several_files_and_fingerprints_each(tmp_path, tiny_model_dir):
    (tmp_path / "a.txt").write_text("the movie was good\nthe plot was dull\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"body": "john visited paris"}\n{"body": "mary left rome"}\n',
                                      encoding="utf-8")
    assert main(["pretrain", "--train", str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl"), "--text-column", "body",
                 "--dev", str(tmp_path / "a.txt"), "--out", str(tmp_path / "run"), "--model", str(tiny_model_dir),
                 "--max-steps", "2", *COMMON]) == 0
    train_data = _json(tmp_path / "run" / "environment.json")["data"]["train"]
    assert [Path(f["path"]).name for f in train_data["files"]] == ["a.txt", "b.jsonl"] and train_data["rows"] == 4


def test_a_lineage_cycle_is_reported_as_a_cycle_not_a_missing_run(tmp_path, capsys):
    from bertkit.config import RunConfig
    from bertkit.run_dir import RunDir, lineage

    a, b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    for run, parent in ((a, b), (b, a)):
        run.path.mkdir()
        run.write_config(RunConfig())
        run.write_json("lineage.json", {"base_model": "embedded", "parent": {"kind": "run", "path": str(parent.path),
                                                                             "task": "classification"}})
    chain = lineage(a.path)
    assert [c.get("run") or c.get("cycle_to") for c in chain] == [str(a.path.resolve()), str(b.path.resolve()),
                                                                  str(a.path)]
    assert main(["lineage", str(a.path)]) == 0
    assert "[cycle:" in capsys.readouterr().out
