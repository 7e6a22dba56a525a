"""Vocabulary adaptation (model.extend_vocab): the unknown characters found, the tokenizer extended, the model
resized with its new embeddings started from what it knows, and the whole recipe through the command line
(pretrain --extend-vocab -> fine-tune --init-from -> predict) on the tiny model."""

import json

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from bertkit.cli import main
from bertkit.errors import DataError
from bertkit.models.loading import load_tokenizer
from bertkit.models.vocab import extend_tokenizer, init_new_embeddings, new_tokens, read_token_list

COMMON = ["--precision", "fp32", "--quiet", "--seed", "1", "--batch-size", "8"]

# The tiny model knows 这部电影很好看... (conftest.CHINESE) but not 酒店房间差服务: reviews in both.
KNOWN_POS, KNOWN_NEG = ["这部电影很好看", "非常精彩", "我喜欢"], ["糟糕", "无聊", "不太好看"]
NEW_POS, NEW_NEG = ["酒店房间干净", "服务热情周到"], ["酒店房间差", "服务态度恶劣"]


def _reviews(n: int) -> list[tuple[str, str]]:
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        known = (KNOWN_POS if label == "positive" else KNOWN_NEG)[i % 3]
        new = (NEW_POS if label == "positive" else NEW_NEG)[(i // 2) % 2]
        rows.append((f"{known}，{new}" if i % 4 < 2 else new, label))
    return rows


def test_new_tokens_are_the_unknown_characters_most_frequent_first(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    texts = ["酒店很好", "酒店房间", "酒", "服务"] + ["abж", "жab"] * 3
    found = new_tokens(texts, tok, min_count=1)
    assert found[0] == "酒" and set(found) == {"酒", "店", "房", "间", "服", "务", "##ж", "ж"}
    assert "很" not in found and "好" not in found  # known to the tiny vocabulary
    assert new_tokens(texts, tok, min_count=3) == ["酒", "##ж", "ж"]  # 店 twice only
    assert new_tokens(texts, tok, min_count=3) == new_tokens(list(texts), tok, min_count=3)  # deterministic


def test_extended_tokenizer_reads_the_new_characters_and_keeps_the_old_ids(tiny_model_dir, tmp_path):
    tok = load_tokenizer(str(tiny_model_dir))
    before = tok("这部电影很好看 abc")["input_ids"]
    extended, added = extend_tokenizer(tok, ["酒", "店", "##ж", "ж", "很"])  # 很 is known: skipped
    assert added == ["酒", "店", "##ж", "ж"]
    assert [extended.convert_tokens_to_ids(t) for t in added] == list(range(len(tok), len(tok) + 4))
    assert extended("这部电影很好看 abc")["input_ids"] == before
    assert extended.tokenize("酒店很好 abж жab") == ["酒", "店", "很", "好", "a", "##b", "##ж", "ж", "##a", "##b"]
    assert extended.unk_token_id not in extended("酒店 abж")["input_ids"]
    extended.save_pretrained(tmp_path)  # plain transformers reads it back the same
    assert AutoTokenizer.from_pretrained(tmp_path)("酒店 abж")["input_ids"] == extended("酒店 abж")["input_ids"]


def test_a_listed_word_the_pre_tokenizer_would_split_becomes_an_added_token(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    extended, added = extend_tokenizer(tok, ["酒店", "covid19"])
    assert added == ["covid19", "酒店"]  # vocabulary entry first, then the added token
    ids = extended("酒店 covid19", add_special_tokens=False)["input_ids"]
    assert ids == [extended.convert_tokens_to_ids("酒店"), extended.convert_tokens_to_ids("covid19")]


def test_new_rows_start_from_known_pieces_or_near_the_mean_and_the_decoder_stays_tied(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    model = AutoModelForMaskedLM.from_pretrained(tiny_model_dir).eval()
    old = model.get_input_embeddings().weight.detach().clone()
    extended, added = extend_tokenizer(tok, ["酒", "abab"])
    start = init_new_embeddings(model, tok, extended, added)
    assert start == {"from_pieces": 1, "drawn": 1}
    weight = model.get_input_embeddings().weight
    assert weight.shape[0] == len(extended) and model.config.vocab_size == len(extended)
    assert torch.equal(weight[: len(tok)], old)  # what the model knew is untouched
    pieces = tok("abab", add_special_tokens=False)["input_ids"]
    assert torch.allclose(weight[extended.convert_tokens_to_ids("abab")], old[pieces].mean(0))
    new_row = weight[extended.convert_tokens_to_ids("酒")]
    typical = (old - old.mean(0)).norm(dim=1).mean()  # as far from the mean as a known token, not at it
    assert 0.3 * typical < (new_row - old.mean(0)).norm() < 3 * typical
    assert model.get_output_embeddings().weight.data_ptr() == weight.data_ptr()
    assert model.get_output_embeddings().bias.shape[0] == len(extended)
    with torch.no_grad():
        logits = model(**extended("酒店 abab", return_tensors="pt")).logits
    assert logits.shape[-1] == len(extended) and torch.isfinite(logits).all()


def test_token_list_errors_name_the_file_and_line(tmp_path):
    good = tmp_path / "tokens.txt"
    good.write_text("酒\n\n店\n酒\n", encoding="utf-8")
    assert read_token_list(good) == ["酒", "店"]
    bad = tmp_path / "bad.txt"
    bad.write_text("酒\n酒 店\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.txt, line 2: .* holds a space"):
        read_token_list(bad)
    with pytest.raises(DataError, match="no such file"):
        read_token_list(tmp_path / "missing.txt")


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, tiny_model_dir):
    """A pre-training run with --extend-vocab on Chinese reviews, and a classifier started from it."""
    from conftest import write_csv

    tmp = tmp_path_factory.mktemp("vocab")
    rows = _reviews(160)
    corpus = tmp / "corpus.txt"
    corpus.write_text("".join(t + "\n" for t, _ in rows), encoding="utf-8")
    train = write_csv(tmp / "train.csv", ["text", "label"], rows[:120])
    dev = write_csv(tmp / "dev.csv", ["text", "label"], rows[120:])
    assert main(["pretrain", "--train", str(corpus), "--out", str(tmp / "mlm"), "--model", str(tiny_model_dir),
                 "--extend-vocab", "--extend-vocab-min-count", "2", "--max-steps", "20", "--lr", "1e-4",
                 *COMMON]) == 0
    assert main(["train", "--train", str(train), "--dev", str(dev), "--out", str(tmp / "cls"), "--method",
                 "standard", "--init-from", str(tmp / "mlm"), "--max-steps", "60", "--lr", "5e-3", *COMMON]) == 0
    return tmp


def _json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _unknown_chars(tiny_model_dir) -> set[str]:
    tok = load_tokenizer(str(tiny_model_dir))
    text = "".join(t for t, _ in _reviews(160))
    return {ch for ch in set(text) if tok(ch, add_special_tokens=False)["input_ids"] == [tok.unk_token_id]}


def test_pretrain_extend_vocab_saves_a_model_plain_transformers_loads(adapted, tiny_model_dir):
    unknown = _unknown_chars(tiny_model_dir)
    assert {"酒", "店", "恶", "，"} <= unknown and "情" not in unknown  # 情 is in the tiny vocabulary
    base = len(AutoTokenizer.from_pretrained(tiny_model_dir))
    tok = AutoTokenizer.from_pretrained(adapted / "mlm" / "model")
    model = AutoModelForMaskedLM.from_pretrained(adapted / "mlm" / "model")
    assert len(tok) == model.config.vocab_size == base + len(unknown)
    assert tok.unk_token_id not in tok("酒店房间差，服务态度恶劣")["input_ids"]
    env = _json(adapted / "mlm" / "environment.json")["data"]
    assert env["vocabulary"]["added"] == len(unknown) and env["vocabulary"]["unknown_share_before"] > 0.3
    assert env["vocabulary"]["unknown_share_after"] == 0.0 and env["coverage"]["unknown_share"] == 0.0
    init = _json(adapted / "mlm" / "lineage.json")["init"]["vocabulary"]
    assert set(init["tokens"]) == unknown and init["drawn"] == len(unknown)
    config = (adapted / "mlm" / "config.yaml").read_text(encoding="utf-8")
    assert "extend_vocab: true" in config and "extend_vocab_min_count: 2" in config


def test_a_run_started_from_the_adapted_one_reads_the_new_characters(adapted, tiny_model_dir, capsys):
    unknown = _unknown_chars(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(adapted / "cls" / "model")
    assert len(tok) == len(load_tokenizer(str(tiny_model_dir))) + len(unknown)
    env = _json(adapted / "cls" / "environment.json")["data"]
    assert env["coverage"]["unknown_share"] == 0.0 and "vocabulary" not in env  # inherited, nothing added here
    assert _json(adapted / "cls" / "results.json")["dev"]["accuracy"] >= 0.9  # the label lies in the new characters
    capsys.readouterr()
    assert main(["lineage", str(adapted / "cls")]) == 0
    assert f"+{len(unknown)} tokens" in capsys.readouterr().out
    assert main(["predict", str(adapted / "cls"), "--text", "服务态度恶劣"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["label"] == "negative"


def test_runs_down_the_lineage_of_an_extended_vocabulary_train_their_word_embeddings(adapted, tmp_path):
    """The new rows had only the adapting run's pre-training: a run two steps down from it trains them as its
    child does, unless told otherwise."""
    from bertkit.run_dir import RunDir

    assert RunDir(adapted / "cls").load_config().train.freeze_embeddings is False
    assert main(["train", "--train", str(adapted / "train.csv"), "--out", str(tmp_path / "again"), "--method",
                 "standard", "--init-from", str(adapted / "cls"), "--max-steps", "2", *COMMON]) == 0
    assert RunDir(tmp_path / "again").load_config().train.freeze_embeddings is False
    assert _json(tmp_path / "again" / "lineage.json")["parent"]["extended_vocab"] is True


@pytest.mark.parametrize("flags, message", [
    (["--lora-r", "4"], "LoRA keeps the embeddings frozen"),
    (["--freeze-embeddings"], "freeze_embeddings"),
    (["--stream"], "reads it in chunks"),
])
def test_extend_vocab_refuses_settings_that_keep_new_embeddings_fixed(flags, message, tmp_path, tiny_model_dir,
                                                                      capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("酒店很好\n" * 20, encoding="utf-8")
    assert main(["pretrain", "--train", str(corpus), "--out", str(tmp_path / "r"), "--model", str(tiny_model_dir),
                 "--extend-vocab", *flags, *COMMON]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("family", ["xlm-roberta", "deberta-v2"])
def test_a_sentencepiece_tokenizer_gets_the_unknown_characters_as_added_tokens(family, tmp_path):
    from families import build_family

    folder = build_family(family, tmp_path / family)
    tok = load_tokenizer(str(folder))
    texts = ["酒店很好 the film", "酒店房间 was good"] * 3
    assert tok.unk_token_id in tok("酒店")["input_ids"]
    found = new_tokens(texts, tok, min_count=2)
    assert found == ["酒", "店", "很", "好", "房", "间"]  # characters, not the unknown runs they sit in
    extended, added = extend_tokenizer(tok, found)
    assert added == found and extended.unk_token_id not in extended("酒店房间 the film")["input_ids"]
    assert extended("the film", add_special_tokens=False)["input_ids"] == tok("the film", add_special_tokens=False)[
        "input_ids"]
    model = AutoModelForMaskedLM.from_pretrained(folder)
    assert init_new_embeddings(model, tok, extended, added) == {"from_pieces": 0, "drawn": 6}
    assert model.get_input_embeddings().weight.shape[0] == len(extended)
    extended.save_pretrained(tmp_path / "saved")
    assert AutoTokenizer.from_pretrained(tmp_path / "saved")("酒店")["input_ids"] == extended("酒店")["input_ids"]


def test_drawn_rows_are_distinct_and_reproducible(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    extended, added = extend_tokenizer(tok, list("酒店房间"))
    rows = []
    for _ in range(2):
        model = AutoModelForMaskedLM.from_pretrained(tiny_model_dir)
        init_new_embeddings(model, tok, extended, added, seed=5)
        rows.append(model.get_input_embeddings().weight[len(tok):].detach().clone())
    assert torch.equal(rows[0], rows[1])  # the same seed, the same starting rows (a resumed run rebuilds them)
    assert torch.cdist(rows[0], rows[0]).triu(1)[torch.ones(4, 4).triu(1).bool()].min() > 0.01
