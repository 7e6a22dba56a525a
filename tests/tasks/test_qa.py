"""QA plug-in: readers, answer checks, windows over long contexts, span decoding."""

import json

import numpy as np
import pytest

from bertkit.config import DataConfig, task_config
from bertkit.data.task_files import read_examples
from bertkit.errors import DataError
from bertkit.models.loading import load_tokenizer
from bertkit.tasks import get_task
from conftest import REPO, write_jsonl

FIXTURE = REPO / "tests" / "fixtures" / "squad_sample.json"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


def _qa(**kw):
    return get_task(task_config("qa", **kw))


def test_squad_json_fixture_reads_with_answers_in_place(tokenizer):
    examples = read_examples(_qa(), str(FIXTURE), DataConfig(), tokenizer)
    assert len(examples) == 65
    for ex in examples:
        for a in ex["answers"]:
            assert ex["context"][a["start"]:a["start"] + len(a["text"])] == a["text"]


def test_v2_jsonl_mismatch_fix_reject_and_duplicates(tmp_path, tokenizer):
    rows = [{"id": "a", "question": "who ?", "context": "john met mary . john left .",
             "answers": {"text": ["mary"], "answer_start": [3]}},  # wrong offset: mary is at 9
            {"id": "b", "question": "where ?", "context": "nobody knows", "answers": {"text": [], "answer_start": []}}]
    f = write_jsonl(tmp_path / "q.jsonl", rows)
    task = _qa()
    examples = read_examples(task, str(f), DataConfig(), tokenizer)
    assert examples[0]["answers"] == [{"text": "mary", "start": 9}]
    task.fit(examples)
    assert task.version_2
    with pytest.raises(DataError, match=r"q.jsonl:1: answer 'mary' is not at answer_start 3"):
        read_examples(_qa(answer_mismatch="reject"), str(f), DataConfig(), tokenizer)
    missing = write_jsonl(tmp_path / "m.jsonl", [{**rows[0], "answers": {"text": ["rome"], "answer_start": [0]}}])
    with pytest.raises(DataError, match="does not occur in the context"):
        read_examples(_qa(), str(missing), DataConfig(), tokenizer)
    dup = write_jsonl(tmp_path / "d.jsonl", [rows[1], rows[1]])
    with pytest.raises(DataError, match="duplicated question id"):
        read_examples(_qa(), str(dup), DataConfig(), tokenizer)


def test_windows_label_the_answer_or_cls(tokenizer):
    words = ["the", "film", "was", "very", "quite", "and"] * 30
    context = " ".join(words[:100] + ["paris"] + words[100:])
    start = context.index("paris")
    ex = [{"id": "x", "question": "where ?", "context": context, "answers": [{"text": "paris", "start": start}],
           "where": "x"}]
    task = _qa(doc_stride=16)
    feats = task.preprocess(ex, tokenizer, DataConfig(max_length=48))
    assert len(feats) > 4 and all(len(f["input_ids"]) <= 48 for f in feats)
    covered = set()
    for f in feats:
        s, e = f["start_positions"], f["end_positions"]
        spans = [o for o in f["offsets"] if o is not None]
        covered.update(range(spans[0][0], spans[-1][1]))
        if s == 0:
            assert not (spans[0][0] <= start and spans[-1][1] >= start + 5)
        else:
            assert context[f["offsets"][s][0]:f["offsets"][e][1]] == "paris"
    assert set(range(len(context))) - covered <= {i for i, c in enumerate(context) if c == " "}


def test_spans_compete_across_windows_and_stay_substrings(tokenizer):
    context = "john met mary in paris . " * 12
    ex = [{"id": "x", "question": "who ?", "context": context, "answers": [], "where": "x"}]
    task = _qa(doc_stride=8, n_best=5)
    feats = task.preprocess(ex, tokenizer, DataConfig(max_length=32), with_labels=False)
    rng = np.random.default_rng(0)
    outputs = []
    for k, f in enumerate(feats):
        out = rng.normal(size=(len(f["input_ids"]), 2)).astype(np.float32)
        if k == len(feats) - 1:  # the last window is sure about its first context token
            first = next(i for i, o in enumerate(f["offsets"]) if o is not None)
            out[first] += 50.0
        reduced = task.reduce_feature(out, f)
        assert len(reduced["spans"]) <= 5  # only the n-best survive the batch
        outputs.append(reduced)
    merged = task.combine(outputs, feats, 1)
    pred = task.postprocess(merged, ex)[0]
    assert pred["answer"] == context[pred["start"]:pred["end"]] and pred["start"] > len(context) // 2
    json.dumps(pred)


def test_v2_null_threshold_is_tuned_and_applied(tokenizer):
    task = _qa()
    examples = [{"id": str(i), "question": "q", "context": "john met mary", "where": str(i),
                 "answers": [{"text": "mary", "start": 9}] if i % 2 else []} for i in range(6)]
    task.fit(examples)
    assert task.version_2
    # answerable questions: span "mary" beats no-answer by 2; unanswerable: no-answer wins by 1
    outputs = [{"spans": [(5.0, 9, 13)], "null": 3.0 if i % 2 else 6.0} for i in range(6)]
    task.tune(outputs, examples)
    assert -2.0 <= task.null_threshold < 1.0
    answers = [p["answer"] for p in task.postprocess(outputs, examples)]
    assert answers == ["", "mary"] * 3
    scores = task.metrics(outputs, examples)
    assert scores["f1"] == 100.0 and scores["NoAns_f1"] == 100.0 and scores["HasAns_total"] == 3.0


def test_a_long_question_in_a_short_window_still_gets_overlapping_windows(tokenizer):
    """A question of half the window left less context than the default stride, which the tokenizer
    refused with a panic: the overlap now shrinks to fit, and every window still has the whole question."""
    question = " ".join(["where", "was", "the", "very", "quite", "film"] * 6)  # cut to half the window
    context = " ".join(["the", "film", "was", "in", "paris", "and"] * 20)
    ex = [{"id": "x", "question": question, "context": context, "answers": [], "where": "x"}]
    feats = _qa().preprocess(ex, tokenizer, DataConfig(max_length=64), with_labels=False)
    assert len(feats) > 2 and all(len(f["input_ids"]) <= 64 for f in feats)
    spans = [[o for o in f["offsets"] if o is not None] for f in feats]
    assert all(s[0][0] < prev[-1][1] for prev, s in zip(spans, spans[1:]))  # consecutive windows overlap
