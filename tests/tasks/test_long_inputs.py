"""Inputs longer than the window: windows read every token once (oracle: one untruncated tokenisation),
head-tail and truncate cut what they say they cut, and a whole document gets one answer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertkit.config import DataConfig, task_config
from bertkit.errors import ConfigError
from bertkit.models.loading import embedded_model_dir, load_tokenizer
from bertkit.tasks import get_task
from bertkit.tasks.long_inputs import combine_windows, encode, notes, summarise
from bertkit.training.defaults import ModelInfo, window_for

WORDS = "the film opens slowly , then the acting grows warm and the story turns into something unexpected".split()


@pytest.fixture(scope="module", params=["embedded", "roberta"])
def tokenizer(request, tmp_path_factory):
    if request.param == "embedded":
        return load_tokenizer(str(embedded_model_dir()))
    from families import build_family

    return load_tokenizer(str(build_family("roberta", tmp_path_factory.mktemp("roberta"))))


def _text(n_words: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, n_words))


def _content(tokenizer, ids):
    specials = set(tokenizer.all_special_ids)
    return [t for t in ids if t not in specials]


@pytest.mark.parametrize("stride", [0, 5, None])
def test_windows_read_every_token_of_a_long_text_once_in_order(tokenizer, stride):
    texts = [_text(n, seed) for seed, n in enumerate([3, 40, 170, 400])]
    features = encode(tokenizer, texts, None, 48, "windows", stride)
    step = 48 // 4 if stride is None else stride
    for i, text in enumerate(texts):
        whole = _content(tokenizer, tokenizer(text)["input_ids"])
        windows = [_content(tokenizer, f["input_ids"]) for f in features if f["example_index"] == i]
        assert all(len(f["input_ids"]) <= 48 for f in features)
        rebuilt = windows[0] + [t for w in windows[1:] for t in w[step:]]  # each later window repeats `step`
        assert rebuilt == whole
        assert all(f["tokens"] == len(tokenizer(text)["input_ids"]) and f["cut"] == 0
                   for f in features if f["example_index"] == i)


def test_head_tail_keeps_a_quarter_from_the_head_and_the_rest_from_the_end(tokenizer):
    text = _text(300, 7)
    whole = _content(tokenizer, tokenizer(text)["input_ids"])
    (feat,) = encode(tokenizer, [text], None, 64, "head-tail")
    room = 64 - tokenizer.num_special_tokens_to_add(pair=False)
    assert len(feat["input_ids"]) == 64
    assert _content(tokenizer, feat["input_ids"]) == whole[: room // 4] + whole[len(whole) - (room - room // 4):]
    assert feat["input_ids"][0] == tokenizer(text)["input_ids"][0] and feat["cut"] == len(whole) - room


def test_truncate_keeps_the_start_and_counts_what_it_cut(tokenizer):
    texts = [_text(300, 3), _text(4, 4)]
    features = encode(tokenizer, texts, None, 64, "truncate")
    assert [f["example_index"] for f in features] == [0, 1]
    assert features[0]["input_ids"] == tokenizer(texts[0], truncation=True, max_length=64)["input_ids"]
    whole = len(_content(tokenizer, tokenizer(texts[0])["input_ids"]))
    assert features[0]["cut"] == whole - (64 - tokenizer.num_special_tokens_to_add(pair=False))
    assert features[1]["cut"] == 0


def test_a_pair_windows_its_longer_text_and_keeps_the_other_in_every_window(tokenizer):
    question, passage = "what turns warm ?", _text(200, 5)
    for pair, windowed in (((question, passage), 1), ((passage, question), 0)):
        features = encode(tokenizer, [pair[0]], [pair[1]], 48, "windows", 8)
        assert len(features) > 3 and all(len(f["input_ids"]) <= 48 for f in features)
        short = _content(tokenizer, tokenizer(question)["input_ids"])
        for f in features:
            content = _content(tokenizer, f["input_ids"])
            assert (content[: len(short)] if windowed == 1 else content[-len(short):]) == short
        assert all(f["cut"] == 0 for f in features)


def test_a_long_text_paired_with_another_long_one_cuts_the_shorter_to_half_the_window_and_says_so(tokenizer):
    a, b = _text(150, 1), _text(90, 2)
    features = encode(tokenizer, [a], [b], 64, "windows")
    room = 64 - tokenizer.num_special_tokens_to_add(pair=True)
    assert all(len(f["input_ids"]) <= 64 for f in features)
    assert features[0]["cut"] == len(tokenizer(b, add_special_tokens=False)["input_ids"]) - room // 2
    with pytest.raises(ConfigError, match="head-tail cuts one text"):
        encode(tokenizer, [a], [b], 64, "head-tail")


def test_one_answer_per_document_the_mean_of_its_windows_logits():
    features = [{"example_index": 0}, {"example_index": 1}, {"example_index": 1}, {"example_index": 1}]
    outputs = [np.array([1.0, 0.0]), np.array([0.0, 3.0]), np.array([3.0, 0.0]), np.array([0.0, 0.0])]
    combined = combine_windows(outputs, features, 2)
    np.testing.assert_allclose(combined, [[1.0, 0.0], [1.0, 1.0]])
    assert notes(features + [{"example_index": 0, "cut": 7}], 2) == [{"windows": 2, "cut_tokens": 7}, {"windows": 3}]


def test_the_length_summary_counts_long_inputs_and_names_what_was_done(tokenizer):
    texts = [_text(n, n) for n in (5, 10, 200, 300)]
    windows = summarise(encode(tokenizer, texts, None, 64, "windows"), 64)
    assert (windows.examples, windows.over_window, windows.cut_examples) == (4, 2, 0)
    assert "read whole in" in windows.line("inputs", "windows")
    cut = summarise(encode(tokenizer, texts, None, 64, "truncate"), 64)
    assert cut.cut_examples == 2 and cut.windows == 4
    assert "are not read (task.long_inputs truncate)" in cut.line("inputs", "truncate")
    assert summarise(encode(tokenizer, texts[:2], None, 64, "windows"), 64).line("inputs", "windows") is None


@pytest.mark.parametrize("lengths,limit,window", [
    ([20] * 95 + [300] * 5, 512, 128),          # short sentences: the task's default
    ([233] * 50 + [618] * 50, 512, 512),        # long reviews: up to the model's limit
    ([200] * 91 + [900] * 9, 512, 256),         # the 90th percentile decides
    ([700] * 100, 512, 512),                    # longer than the model: its limit
    ([100] * 100, 64, 64),                      # a model shorter than the default
])
def test_the_window_is_chosen_from_the_training_lengths(lengths, limit, window):
    chosen, why = window_for(lengths, 128, ModelInfo(max_positions=limit))
    assert chosen == window and f"windows of {window} tokens" in why


def test_classification_trains_every_window_and_scores_the_document(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    task = get_task(task_config("classification"))
    examples = [{"text": " ".join(["the film was very quite"] * 30) + " good", "label": "positive", "where": "1"},
                {"text": "a bad film", "label": "negative", "where": "2"}]
    task.fit(examples)
    features = task.preprocess(examples, tokenizer, DataConfig(max_length=32))
    assert len(features) > 3 and {f["label"] for f in features if f["example_index"] == 0} == {1}
    logits = task.combine([np.array([0.0, 1.0])] * (len(features) - 1) + [np.array([2.0, 0.0])], features, 2)
    assert logits.shape == (2, 2)
    json.dumps(task.input_notes(features, 2))


def test_the_same_long_review_with_two_endings_gets_two_answers_and_says_how_it_was_read(toy_run, caplog):
    """The defect of truncation: past the window, the ending decides nothing. Read in windows, the ending
    moves the answer; cut, both endings give the same probabilities, and the prediction says how much was
    not read."""
    from bertkit.inference.predictor import Predictor

    run_dir, _ = toy_run
    lengths = json.loads((run_dir / "environment.json").read_text())["data"]["lengths"]
    assert lengths["train"]["window"] == 64 and lengths["train"]["over_window"] == 0
    predictor = Predictor.from_run(run_dir, precision="fp32")
    filler = " ".join(["the movie plot was very quite and it is a film"] * 6)  # past the 64-token window
    reviews = [filler + " awful bad poor", filler + " superb great lovely"]
    with caplog.at_level("INFO", logger="bertkit"):
        read = predictor.predict_examples(predictor.task.make_examples(reviews, predictor.tokenizer),
                                          source="reviews.csv")
    assert all(p["windows"] >= 2 and "cut_tokens" not in p for p in read)
    assert read[1]["probabilities"]["positive"] > read[0]["probabilities"]["positive"] + 0.05
    assert any("reviews.csv: 2 of 2 inputs (100.0%) are longer than the window of 64 tokens" in r.getMessage()
               for r in caplog.records)
    predictor.task.cfg.long_inputs = "truncate"
    try:
        cut = predictor.predict(reviews)
    finally:
        predictor.task.cfg.long_inputs = "windows"
    assert cut[0]["probabilities"] == cut[1]["probabilities"] and cut[0]["cut_tokens"] > 0
