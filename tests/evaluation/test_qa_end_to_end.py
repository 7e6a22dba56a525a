"""QA through the command line on the tiny model: train -> evaluate -> predict -> plain transformers."""

import json
import random

import pytest

from bertkit.cli import main
from bertkit.inference.predictor import Predictor
from conftest import FILLER, NAMES, cli_train, write_jsonl


def toy_qa(n: int, seed: int) -> list[dict]:
    """'who ...?' over a context with exactly one person name: the answer is that name."""
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        words = rng.sample(FILLER, rng.randint(3, 8))
        name = rng.choice(NAMES)
        words.insert(rng.randint(0, len(words)), name)
        context = " ".join(words)
        rows.append({"id": f"{seed}-{k}", "question": "who visited ?", "context": context,
                     "answers": {"text": [name], "answer_start": [context.index(name)]}})
    return rows


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("qa")
    train = write_jsonl(tmp / "train.jsonl", toy_qa(300, seed=1))
    dev = write_jsonl(tmp / "dev.jsonl", toy_qa(60, seed=2))
    run = cli_train("qa", train, dev, tmp / "run", tiny_model_dir, "--max-steps", "200", "--lr", "3e-3",
                    "--batch-size", "16", "--eval-every", "100", "--max-length", "32")
    return run, dev


def test_qa_learns_the_toy_task(qa_run):
    results = json.loads((qa_run[0] / "results.json").read_text())
    assert results["primary_metric"] == "f1" and results["dev"]["f1"] >= 90.0
    assert set(results["dev"]) == {"exact_match", "f1"}


def test_evaluate_and_predict_commands(qa_run, capsys):
    run, dev = qa_run
    assert main(["evaluate", str(run), "--data", str(dev), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["exact_match"] >= 90.0
    context = "the film was quite fun and mary is very nice"
    assert main(["predict", str(run), "--question", "who visited ?", "--context", context]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] == "mary" and context[out["start"]:out["end"]] == "mary" and 0 < out["score"] <= 1


def test_long_context_uses_many_windows(qa_run):
    predictor = Predictor.from_run(qa_run[0])
    # about 3,000 words: a hundred windows of 32 tokens; the name sits in the second half
    context = " ".join(["the film was very dull and the plot was weak"] * 200 + ["and peter"] +
                       ["it is a story"] * 200)
    out = predictor.predict([{"question": "who visited ?", "context": context}])[0]
    assert out["answer"] == "peter" and context[out["start"]:out["end"]] == "peter"


def test_saved_model_loads_with_plain_transformers_and_agrees(qa_run):
    # transformers 5 removed pipeline("question-answering"); the model directory still loads on its own
    # with AutoModelForQuestionAnswering, and its logits give bertkit's answer.
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    model_dir = str(qa_run[0] / "model")
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    question, context = "who visited ?", "the plot was dull and anna is nice"
    enc = tokenizer(question, context, return_tensors="pt", return_offsets_mapping=True)
    offsets = enc.pop("offset_mapping")[0]
    with torch.no_grad():
        out = model(**enc)
    in_context = torch.tensor([s == 1 for s in enc.sequence_ids(0)])
    start = int(out.start_logits[0].masked_fill(~in_context, -1e9).argmax())
    end = int(out.end_logits[0].masked_fill(~in_context, -1e9).argmax())
    plain = context[int(offsets[start][0]):int(offsets[end][1])]
    ours = Predictor.from_run(qa_run[0], precision="fp32").predict([(question, context)])[0]
    assert plain == ours["answer"] == "anna"


def test_onnx_export_gives_the_same_answers(qa_run, tmp_path):
    pytest.importorskip("onnxruntime")
    run, dev = qa_run
    assert main(["export", str(run), "--out", str(tmp_path / "onnx"), "--format", "onnx"]) == 0
    manifest = json.loads((tmp_path / "onnx" / "bertkit-export.json").read_text())
    assert manifest["outputs"] == ["start_logits", "end_logits"]
    assert manifest["parity"]["agreement"] >= 0.995
    item = [{"question": "who visited ?", "context": "the film was quite fun and mary was there"}]
    assert Predictor.from_path(tmp_path / "onnx").predict(item)[0]["answer"] == \
        Predictor.from_run(run, precision="fp32").predict(item)[0]["answer"]


def test_the_report_breaks_scores_down_by_question_type_and_answer_length(qa_run):
    import re

    from bertkit.evaluation.views.qa import answer_length_bucket, question_type

    page = (qa_run[0] / "report.html").read_text()
    results = json.loads((qa_run[0] / "results.json").read_text())
    assert "By question type" in page and "By gold answer length" in page and "Worst-answered" in page
    rows = re.findall(r"<tr><td>([^<]+)</td><td>(\d+)</td><td>([\d.]+)</td><td>([\d.]+)</td></tr>",
                      page.split("By gold answer length")[1].split("</table>")[0])
    total = sum(int(n) for _, n, _, _ in rows)
    assert total == 60
    assert sum(int(n) * float(em) for _, n, em, _ in rows) / total == pytest.approx(results["dev"]["exact_match"],
                                                                                    abs=1e-3)
    assert [question_type(q) for q in ("Who wrote it?", "How many are there?", "In which year?", "Name it.")] == \
        ["who", "how many", "which", "other"]
    assert answer_length_bucket([{"text": "the Eiffel Tower"}]) == "2-3 words"  # "the" is not counted
    assert answer_length_bucket([]) == "no answer"
