"""Every BERT family end to end, on tiny random models with their own real tokenizer types (tests/families.py):
classification on pairs, NER (CoNLL training, raw-text prediction with exact character spans), QA with
exact answer spans, masked-LM pre-training then --init-from, LoRA, ONNX export (once per model code), and
RUN/model with plain transformers. The models are random: what is checked is that everything runs and every
offset slices the text exactly, not what the models learned."""

import json

import pytest

from bertkit.cli import main
from bertkit.inference.predictor import Predictor
from conftest import toy_ner, toy_sentiment, write_conll, write_csv
from families import FAMILIES, build_family

CONTEXT = "john smith visited paris on monday . mary met anna in london ."
#: Families whose classifier is another family's code: the same class (BERT with a Chinese vocabulary), or one
#: transformers generates from it (XLM-R from RoBERTa).
SAME_MODEL_CODE = {"bert-chinese": "bert", "xlm-roberta": "roberta"}
QUESTIONS = [("who visited paris ?", "john smith"), ("where did mary meet anna ?", "london"), ("when ?", "monday")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("family-data")
    pairs = [(t, " ".join(reversed(t.split())), s) for t, s in toy_sentiment(48, 1)]
    qa = tmp / "qa.jsonl"
    qa.write_text("".join(json.dumps({"id": str(i), "question": q, "context": CONTEXT,
                                      "answers": {"text": [a], "answer_start": [CONTEXT.index(a)]}}) + "\n"
                          for i, (q, a) in enumerate(QUESTIONS * 8)), encoding="utf-8")
    text = tmp / "corpus.txt"
    text.write_text("\n".join(t for t, _ in toy_sentiment(48, 2)) + "\n", encoding="utf-8")
    return {"pairs": write_csv(tmp / "pairs.csv", ["text", "second", "label"], pairs),
            "ner": write_conll(tmp / "ner.conll", toy_ner(48, 1)), "qa": qa, "text": text}


def _train(task_argv, out, model, *extra):
    argv = [*task_argv, "--out", str(out), "--model", str(model), "--max-steps", "3", "--precision", "fp32",
            "--max-length", "48", "--quiet", *extra]
    assert main(argv) == 0, argv
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_family_end_to_end(family, data, tmp_path):
    model = build_family(family, tmp_path / "model")

    # Sentence pairs; RUN/model with plain transformers gives bertkit's probabilities.
    run = _train(["train", "--train", str(data["pairs"]), "--text-pair-column", "second"], tmp_path / "cls", model)
    predictor = Predictor.from_run(run, precision="fp32")
    ours = predictor.predict([{"text": "the film was good", "text_pair": "good was film the"}])[0]
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    plain = AutoModelForSequenceClassification.from_pretrained(run / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    with torch.no_grad():
        probs = plain(**tokenizer("the film was good", "good was film the", return_tensors="pt")).logits.softmax(-1)
    assert ours["probabilities"][ours["label"]] == pytest.approx(float(probs.max()), abs=1e-4)

    # NER: words inside a text are encoded as in running text, and spans slice the text exactly.
    run = _train(["train", "--task", "ner", "--train", str(data["ner"])], tmp_path / "ner", model)
    predictor = Predictor.from_run(run, precision="fp32")
    text = "  angela merkel met  peter in berlin ."
    example = predictor.task.make_examples([text], predictor.tokenizer)[0]
    assert [text[s:e] for s, e in example["spans"]] == text.split()
    words = ["paris", "merkel", "monday"]
    feature = predictor.task.preprocess([{"tokens": words, "where": "x", "doc": 0}], predictor.tokenizer,
                                        predictor.config.data, with_labels=False)[0]
    enc = predictor.tokenizer(" ".join(words), add_special_tokens=False)
    later = [i for i, w in zip(enc["input_ids"], enc.word_ids()) if w is not None and w > 0]
    ids = [i for i in feature["input_ids"] if i not in predictor.tokenizer.all_special_ids]
    assert ids[-len(later):] == later  # the later words' pieces are those of running text
    for entity in predictor.predict([text])[0]["entities"]:
        assert text[entity["start"]:entity["end"]] == entity["text"] == entity["text"].strip() != ""

    # QA: every answer is the exact, trimmed slice of its context.
    run = _train(["train", "--task", "qa", "--train", str(data["qa"])], tmp_path / "qa", model)
    answers = Predictor.from_run(run, precision="fp32").predict([{"question": q, "context": CONTEXT}
                                                                 for q, _ in QUESTIONS])
    assert all(CONTEXT[a["start"]:a["end"]] == a["answer"] == a["answer"].strip() != "" for a in answers)

    # Masked-LM pre-training, then a task started from it: the encoder is kept.
    mlm = _train(["pretrain", "--train", str(data["text"])], tmp_path / "mlm", model)
    run = _train(["train", "--train", str(data["pairs"]), "--init-from", str(mlm)], tmp_path / "from-mlm", model)
    lineage = json.loads((run / "lineage.json").read_text())
    assert lineage["init"]["encoder"].startswith("kept") and lineage["parent"]["path"] == str(mlm.resolve())

    # LoRA: default targets for the family.
    run = _train(["train", "--train", str(data["pairs"]), "--lora-r", "4"], tmp_path / "lora", model)
    init = json.loads((run / "lineage.json").read_text())["init"]
    assert 0 < init["trainable"] < init["parameters"]

    # ONNX export agrees with PyTorch (the export is a graph of the model's code: two families that share it
    # with another are exported there, as each export takes seconds).
    if family in SAME_MODEL_CODE:
        return
    pytest.importorskip("onnxruntime")
    assert main(["export", str(tmp_path / "cls"), "--out", str(tmp_path / "onnx"), "--format", "onnx"]) == 0
    pair = [{"text": "a dull story", "text_pair": "story dull a"}]
    exported = Predictor.from_path(tmp_path / "onnx").predict(pair)[0]
    reference = Predictor.from_run(tmp_path / "cls", precision="fp32").predict(pair)[0]
    assert exported["label"] == reference["label"] and exported["score"] == pytest.approx(reference["score"], abs=1e-4)


def test_what_cannot_work_says_so_at_start_up(data, tmp_path, capsys, monkeypatch):
    from transformers import GPT2Config, GPT2LMHeadModel

    from bertkit.models.transfer import LORA_TARGETS

    decoder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=100)).save_pretrained(decoder)
    base = ["train", "--train", str(data["pairs"]), "--max-steps", "1", "--precision", "fp32"]
    assert main([*base, "--model", str(decoder), "--out", str(tmp_path / "a")]) == 2
    assert "a decoder-only model (gpt2); bertkit fine-tunes encoders" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()

    roberta = build_family("roberta", tmp_path / "roberta")  # 66 position slots, 2 reserved: 64 usable
    assert main([*base, "--model", str(roberta), "--out", str(tmp_path / "b"), "--max-length", "66"]) == 2
    assert "set --max-length (data.max_length) to 64 or less" in capsys.readouterr().err

    monkeypatch.delitem(LORA_TARGETS, "roberta")
    assert main([*base, "--model", str(roberta), "--out", str(tmp_path / "c"), "--lora-r", "4"]) == 2
    err = capsys.readouterr().err
    assert "no default LoRA targets for model type 'roberta'" in err and "query" in err and "value" in err

    assert main([*base, "--model", str(roberta), "--out", str(tmp_path / "d")]) == 0
    assert "the [CLS]-only path is exact for BERT classifiers only (this is roberta)" in capsys.readouterr().err
