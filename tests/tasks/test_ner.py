"""NER plug-in: readers, tag handling, subword alignment, windows and decoding (tiny offline tokenizer)."""

import gzip
import json

import numpy as np
import pytest

from bertkit.config import DataConfig, task_config
from bertkit.data.task_files import read_examples
from bertkit.errors import DataError
from bertkit.models.loading import load_tokenizer
from bertkit.tasks import get_task
from conftest import write_jsonl


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


def _ner(**kw):
    return get_task(task_config("ner", **kw))


def test_conll_reader_documents_columns_and_gzip(tmp_path, tokenizer):
    text = ("-DOCSTART- -X- O\n\njohn NNP B-PER\nvisited VBD O\n\n\nparis NNP B-LOC\n"
            "-DOCSTART- -X- O\n\nmary NNP B-PER\n")
    with gzip.open(tmp_path / "a.conll.gz", "wt") as fh:
        fh.write(text)
    examples = read_examples(_ner(), str(tmp_path / "a.conll.gz"), DataConfig(), tokenizer)
    assert [ex["tokens"] for ex in examples] == [["john", "visited"], ["paris"], ["mary"]]
    assert [ex["doc"] for ex in examples] == [1, 1, 2]
    assert examples[1]["where"].endswith("a.conll.gz:7")
    pos = read_examples(_ner(), str(tmp_path / "a.conll.gz"), DataConfig(tag_index=1), tokenizer, with_labels=False)
    assert "tags" not in pos[0]


def test_conll_ragged_line_and_unseen_tag(tmp_path, tokenizer):
    (tmp_path / "bad.conll").write_text("john NNP B-PER\nvisited O\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.conll:2: 2 columns where earlier lines have 3"):
        read_examples(_ner(), str(tmp_path / "bad.conll"), DataConfig(), tokenizer)
    task = _ner()
    (tmp_path / "train.conll").write_text("john B-PER\nparis B-LOC\n", encoding="utf-8")
    (tmp_path / "dev.conll").write_text("john B-PER\n\nacme B-ORG\n", encoding="utf-8")
    task.fit(read_examples(task, str(tmp_path / "train.conll"), DataConfig(), tokenizer))
    dev = read_examples(task, str(tmp_path / "dev.conll"), DataConfig(), tokenizer)
    with pytest.raises(DataError, match=r"tags that training never saw: B-ORG \(first at .*dev.conll:3\)"):
        task.check_examples(dev, "dev.conll")


def test_invalid_tags_rejected_with_file_line(tmp_path, tokenizer, caplog):
    (tmp_path / "t.conll").write_text("john B-PER\n\nthe O\nparis I-LOC\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"t.conll:3: tag 2 'I-LOC'"):
        read_examples(_ner(invalid_tags="reject", tag_scheme="iob2"), tmp_path / "t.conll", DataConfig(), tokenizer)
    repaired = read_examples(_ner(tag_scheme="iob2"), str(tmp_path / "t.conll"), DataConfig(), tokenizer)
    assert repaired[1]["tags"] == ["O", "B-LOC"]
    assert "1 tag(s) in 1 sentence(s) continued an entity that never started and were made B-" in caplog.text
    assert "t.conll:3, tag 2 'I-LOC'" in caplog.text and "--invalid-tags reject" in caplog.text


def test_jsonl_tokens_and_tags_errors(tmp_path, tokenizer):
    f = write_jsonl(tmp_path / "a.jsonl", [{"tokens": ["john", "left"], "tags": ["B-PER"]}])
    with pytest.raises(DataError, match=r"a.jsonl:1: 2 tokens but 1 tags"):
        read_examples(_ner(), str(f), DataConfig(), tokenizer)
    f = write_jsonl(tmp_path / "b.jsonl", [{"tokens": [], "tags": []}])
    with pytest.raises(DataError, match=r"b.jsonl:1: empty sentence"):
        read_examples(_ner(), str(f), DataConfig(), tokenizer)


def test_raw_text_spans_become_word_tags_with_offsets(tmp_path, tokenizer):
    text = "  john   smith visited\tcafé,  paris"
    rows = [{"text": text, "entities": [{"start": 2, "end": 14, "label": "PER"},
                                        {"start": 29, "end": 34, "label": "LOC"}]},
            {"text": "张三去了北京", "entities": [{"start": 0, "end": 2, "label": "PER"},
                                          {"start": 4, "end": 6, "label": "LOC"}]},
            {"text": "東京に行った", "entities": [{"start": 0, "end": 2, "label": "LOC"}]}]
    examples = read_examples(_ner(), str(write_jsonl(tmp_path / "raw.jsonl", rows)), DataConfig(), tokenizer)
    ex = examples[0]
    assert ex["tokens"] == ["john", "smith", "visited", "café", ",", "paris"]
    assert [text[s:e] for s, e in ex["spans"]] == ex["tokens"]
    assert ex["tags"] == ["B-PER", "I-PER", "O", "O", "O", "B-LOC"]
    assert examples[1]["tokens"] == list("张三去了北京")  # no spaces: one word per character
    assert examples[1]["tags"] == ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]
    japanese = examples[2]  # ideographs split one by one, kana runs stay one word
    assert [japanese["text"][s:e] for s, e in japanese["spans"]] == japanese["tokens"]
    assert japanese["tokens"][:2] == ["東", "京"] and japanese["tags"][:3] == ["B-LOC", "I-LOC", "O"]


@pytest.mark.parametrize("entities,pattern", [
    ([{"start": 3, "end": 40, "label": "PER"}], "lies outside the text"),
    ([{"start": 0, "end": 4, "label": "PER"}, {"start": 2, "end": 6, "label": "LOC"}], "overlap"),
    ([{"start": 0, "label": "PER"}], "needs integer 'start', 'end'"),
])
def test_bad_spans(tmp_path, tokenizer, entities, pattern):
    rows = [{"text": "ok", "entities": []}, {"text": "john smith", "entities": entities}]
    f = write_jsonl(tmp_path / "s.jsonl", rows)
    with pytest.raises(DataError, match=rf"s.jsonl:2: .*{pattern}"):
        read_examples(_ner(), str(f), DataConfig(), tokenizer)


def test_first_subword_alignment_and_all_subwords_option(tokenizer):
    ex = [{"tokens": ["johnx", "paris"], "tags": ["B-PER", "B-LOC"], "where": "x", "doc": 0}]
    task = _ner()
    task.fit(ex)
    feat = task.preprocess(ex, tokenizer, DataConfig())[0]
    pieces = tokenizer.convert_ids_to_tokens(feat["input_ids"])
    assert pieces[:3] == ["[CLS]", "john", "##x"]
    b_per, i_per = task.labels.index("B-PER"), task.labels.index("I-PER")
    assert feat["labels"][:4] == [-100, b_per, -100, task.labels.index("B-LOC")]
    all_sub = _ner(label_all_subwords=True)
    all_sub.fit(ex)
    assert all_sub.preprocess(ex, tokenizer, DataConfig())[0]["labels"][:3] == [-100, b_per, i_per]


def test_long_input_windows_cover_every_word_and_pick_most_context(tokenizer):
    words = ["john", "visited", "paris", "and", "met", "mary"] * 9  # 54 words, one subword each
    ex = [{"tokens": words, "tags": ["O"] * len(words), "where": "x", "doc": 0}]
    task = _ner(stride=6)
    task.fit([{"tokens": ["a"], "tags": ["B-PER"], "where": "x"}])
    feats = task.preprocess(ex, tokenizer, DataConfig(max_length=18))
    assert len(feats) > 3 and all(len(f["input_ids"]) <= 18 for f in feats)
    seen = {w for f in feats for w in f["word_index"] if w >= 0}
    assert seen == set(range(len(words)))
    # each window "predicts" its own number; a word must take the window where it is farthest from an edge
    outputs = [np.tile(np.eye(len(task.labels))[k % len(task.labels)] * (k + 1), (len(f["input_ids"]), 1))
               for k, f in enumerate(feats)]
    combined = task.combine(outputs, feats, 1)[0]
    for w in range(len(words)):
        options = []
        for k, f in enumerate(feats):
            if w in f["word_index"]:
                pos, content = f["word_index"].index(w), len(f["input_ids"]) - 2
                options.append((min(pos - 1, content - pos), k))
        best_k = max(options)[1]
        assert np.allclose(combined[w], outputs[best_k][0]), w


def test_context_sentences_are_unlabelled_extra_tokens(tokenizer):
    examples = [{"tokens": ["john", "left"], "tags": ["B-PER", "O"], "where": "x", "doc": 1},
                {"tokens": ["paris"], "tags": ["B-LOC"], "where": "y", "doc": 1},
                {"tokens": ["mary"], "tags": ["B-PER"], "where": "z", "doc": 2}]
    task = _ner(context_sentences=1)
    task.fit(examples)
    feats = task.preprocess(examples, tokenizer, DataConfig())
    middle = feats[1]
    assert len(middle["input_ids"]) == 2 + 2 + 1  # [CLS] john left | paris | [SEP]: mary is another document
    assert middle["word_index"] == [-1, -1, -1, 0, -1]
    assert [x for x in middle["labels"] if x != -100] == [task.labels.index("B-LOC")]


def test_postprocess_gives_character_entities_for_raw_text(tokenizer):
    task = _ner()
    task.fit([{"tokens": ["a"], "tags": ["B-PER"], "where": "x"}, {"tokens": ["b"], "tags": ["B-LOC"], "where": "x"}])
    examples = task.make_examples(["  john smith  visited café"], tokenizer)
    tags = ["B-PER", "I-PER", "O", "B-LOC"]
    logits = [np.eye(len(task.labels))[[task.labels.index(t) for t in tags]] * 5]
    out = task.postprocess(logits, examples)[0]
    assert [(e["label"], e["text"], e["start"], e["end"]) for e in out["entities"]] == [
        ("PER", "john smith", 2, 12), ("LOC", "café", 22, 26)]
    text = examples[0]["text"]
    assert all(text[e["start"]:e["end"]] == e["text"] and 0 < e["score"] <= 1 for e in out["entities"])
    json.dumps(out)


def test_decoding_reads_the_tags_as_one_valid_sequence_unless_argmax_is_asked(tokenizer):
    examples = [{"tokens": ["a", "b", "c"], "tags": ["B-LOC", "I-LOC", "O"], "where": "x"}]
    # each tag's probability at the three words: word 2 leans to I-PER (a type switch inside the entity),
    # with I-LOC a close second
    scores = {"B-LOC": [0.9, 0.0, 0.0], "I-LOC": [0.0, 0.45, 0.0], "I-PER": [0.0, 0.5, 0.0], "O": [0.1, 0.05, 0.9]}
    for decode, tags, f1 in (("bio", ["B-LOC", "I-LOC", "O"], 1.0), ("argmax", ["B-LOC", "I-PER", "O"], 0.0)):
        task = _ner(decode=decode)
        task.fit(examples + [{"tokens": ["d"], "tags": ["B-PER"], "where": "x"}])
        probs = np.full((3, len(task.labels)), 1e-3)
        for tag, column in scores.items():
            probs[:, task.labels.index(tag)] += column
        logits = [np.log(probs)]
        assert task.postprocess(logits, examples)[0]["tags"] == tags
        assert task.metrics(logits, examples)["f1"] == f1
