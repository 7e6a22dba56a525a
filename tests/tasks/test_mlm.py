"""Masked language modelling: the masking rule, fixed dev masks, fill-mask output, and learning."""

import math

import pytest
import torch

from bertkit.config import DataConfig, TaskConfig, task_config
from bertkit.data.task_files import read_examples
from bertkit.models.loading import load_tokenizer
from bertkit.tasks import get_task
from bertkit.tasks.mlm import IGNORE, mask_tokens

MASK, VOCAB = 4, 1000


def _masks(n_tokens: int, *, whole_word: bool, seed: int, words_per: int = 1):
    ids = list(range(100, 100 + n_tokens))
    word_ids = [-1] + [i // words_per for i in range(n_tokens - 2)] + [-1]
    gen = torch.Generator().manual_seed(seed)
    return ids, word_ids, mask_tokens(ids, word_ids, probability=0.15, whole_word=whole_word, mask_id=MASK,
                                      vocab_size=VOCAB, generator=gen)


def test_masking_follows_bert_rates_and_never_touches_special_tokens():
    chosen = replaced_by_mask = kept = total = 0
    for seed in range(200):
        ids, word_ids, (masked, labels) = _masks(102, whole_word=False, seed=seed)
        assert labels[0] == IGNORE and labels[-1] == IGNORE and masked[0] == ids[0] and masked[-1] == ids[-1]
        for i, label in enumerate(labels):
            if label != IGNORE:
                assert label == ids[i]
                chosen += 1
                replaced_by_mask += masked[i] == MASK
                kept += masked[i] == ids[i]
            else:
                assert masked[i] == ids[i]
        total += 100
    assert abs(chosen / total - 0.15) < 0.01
    assert abs(replaced_by_mask / chosen - 0.8) < 0.03
    assert abs(kept / chosen - 0.1) < 0.03  # (plus the rare random token equal to the original)


def test_whole_word_masking_masks_every_subword_of_a_chosen_word():
    for seed in range(50):
        _, word_ids, (_, labels) = _masks(62, whole_word=True, seed=seed, words_per=3)
        for w in set(word_ids) - {-1}:
            positions = [i for i, x in enumerate(word_ids) if x == w]
            flags = {labels[i] != IGNORE for i in positions}
            assert len(flags) == 1, f"word {w} partly masked"


def test_every_window_gets_at_least_one_mask():
    for seed in range(100):
        _, _, (_, labels) = _masks(4, whole_word=False, seed=seed)
        assert any(label != IGNORE for label in labels)


@pytest.fixture
def mlm(tiny_model_dir, tmp_path):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    task = get_task(TaskConfig(name="mlm"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the movie was good\n\n" + " ".join(["the plot was dull"] * 40) + "\n", encoding="utf-8")
    examples = read_examples(task, str(corpus), DataConfig(max_length=32), tokenizer)
    task.fit(examples)
    return task, tokenizer, examples


def test_long_documents_become_windows_and_dev_masks_are_fixed(mlm):
    task, tokenizer, examples = mlm
    assert len(examples) == 2  # the blank line is skipped
    features = task.preprocess(examples, tokenizer, DataConfig(max_length=32))
    assert [f["example_index"] for f in features].count(1) == math.ceil(160 / 30)  # 160 words, 30 per window
    assert all(len(f["input_ids"]) <= 32 for f in features)
    assert torch.equal(task.collate(features, 0)["labels"], task.collate(features, 0)["labels"])
    torch.manual_seed(0)
    first = task.collate_train(features, 0)["labels"]
    assert not torch.equal(first, task.collate_train(features, 0)["labels"])  # dynamic masking


def test_fill_mask_predictions_come_back_per_mask(mlm, tiny_model_dir):
    from bertkit.inference.batched import predict_outputs
    from bertkit.models.loading import build_model
    from bertkit.runtime import Runtime

    task, tokenizer, _ = mlm
    model, _ = build_model(str(tiny_model_dir), task)
    examples = task.make_examples(["the [MASK] was [MASK]", "a [MASK] film"], tokenizer)
    features = task.preprocess(examples, tokenizer, DataConfig())
    outputs = predict_outputs(model, task, features, Runtime("fp32", cpu=True), 0, len(examples))
    predictions = task.postprocess(outputs, examples)
    assert [len(p["masks"]) for p in predictions] == [2, 1]
    scores = [c["score"] for c in predictions[0]["masks"][0]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
    with pytest.raises(Exception, match="MASK"):
        task.make_examples(["no mask here"], tokenizer)


def test_jieba_words_group_the_characters_of_a_chinese_word_for_whole_word_masking(tiny_model_dir, tmp_path):
    pytest.importorskip("jieba")
    from bertkit.errors import ConfigError

    tokenizer = load_tokenizer(str(tiny_model_dir))
    corpus = tmp_path / "zh.txt"
    corpus.write_text("我喜欢这部电影\n张三去了北京 qxz\n", encoding="utf-8")
    by_char = get_task(task_config("mlm", whole_word_masking=True))
    by_word = get_task(task_config("mlm", whole_word_masking=True, word_segmenter="jieba"))
    examples = read_examples(by_word, str(corpus), DataConfig(max_length=32), tokenizer)
    chars, words = (task.preprocess(examples, tokenizer, DataConfig(max_length=32)) for task in (by_char, by_word))
    assert [f["input_ids"] for f in chars] == [f["input_ids"] for f in words]
    tokens = tokenizer.convert_ids_to_tokens(words[0]["input_ids"])
    assert tokens[1:-1] == list("我喜欢这部电影")
    assert len(set(chars[0]["word_ids"][1:-1])) == 7  # BERT's pre-tokenizer: every character a word
    # jieba: 我 / 喜欢 / 这部 / 电影; special tokens stay out of every word
    assert words[0]["word_ids"] == [-1, 0, 1, 1, 2, 2, 3, 3, -1]
    second = tokenizer.convert_ids_to_tokens(words[1]["input_ids"])
    pieces = [w for t, w in zip(second, words[1]["word_ids"]) if t in ("q", "##x", "##z")]
    assert len(pieces) == 3 and len(set(pieces)) == 1  # the subwords of a Latin-script word stay one word
    word_ids = words[0]["word_ids"]
    for seed in range(20):
        _, labels = mask_tokens(words[0]["input_ids"], word_ids, probability=0.3, whole_word=True, mask_id=MASK,
                                vocab_size=VOCAB, generator=torch.Generator().manual_seed(seed))
        masked = {word_ids[i] for i, label in enumerate(labels) if label != IGNORE}
        assert [label != IGNORE for label in labels] == [w in masked for w in word_ids]  # 喜欢 masked whole
    with pytest.raises(ConfigError, match="whole_word_masking"):
        task_config("mlm", word_segmenter="jieba")


@pytest.mark.parametrize("family", ["roberta", "deberta-v2"])
def test_jieba_words_hold_across_bpe_and_sentencepiece_pieces(family, tmp_path):
    pytest.importorskip("jieba")
    from families import build_family

    tokenizer = load_tokenizer(str(build_family(family, tmp_path / family)))
    task = get_task(task_config("mlm", whole_word_masking=True, word_segmenter="jieba"))
    examples = [{"where": "x", "text": "我喜欢北京 hello world"}]
    feature = task.preprocess(examples, tokenizer, DataConfig(max_length=64))[0]
    pairs = list(zip(tokenizer.convert_ids_to_tokens(feature["input_ids"]), feature["word_ids"]))[1:-1]
    # the last four pieces spell " world" (the space folded into the first); they are one word, not two
    world = [w for _, w in pairs[-4:]]
    assert "".join(t for t, _ in pairs[-4:]).lstrip("Ġ▁") == "world" and len(set(world)) == 1
    assert world[0] not in {w for _, w in pairs[:-4]}
