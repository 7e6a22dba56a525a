"""Tiny random encoders of every supported BERT family, each with a real tokenizer of its own kind
(WordPiece, byte-level BPE, SentencePiece Unigram), built offline in a second or two."""

from __future__ import annotations

from pathlib import Path

import torch

CORPUS = [
    "the film was good and the plot was great", "a dull , boring and weak story", "john smith visited paris",
    "mary jones met anna in london", "angela merkel met peter in berlin on monday", "the acting is fine",
    "who visited paris ? john smith did .", "where is rome ? rome is in italy .", "it was a lovely warm day",
    "an awful , ugly and sad movie", "the story is quite nice and fun", "madrid and rome are cities",
]
FAMILIES = ("bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "deberta-v2", "mpnet",
            "modernbert", "bert-chinese")
SIZE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def _words() -> list[str]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-")
    words = sorted({w for line in CORPUS for w in line.split()})
    return letters + words


def _bpe(specials: list[str]) -> tuple[dict[str, int], list[str]]:
    from tokenizers import ByteLevelBPETokenizer

    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(CORPUS * 4 + [" ".join(_words())], vocab_size=400, min_frequency=1,
                            special_tokens=specials, show_progress=False)
    import json

    data = json.loads(tok._tokenizer.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["merges"]]
    return data["vocab"], merges


def _unigram(specials: list[str]) -> list[tuple[str, float]]:
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=specials, unk_token=specials[0],
                                      show_progress=False)
    tok.train_from_iterator(CORPUS * 4 + [" ".join(_words())], trainer)
    vocab = json.loads(tok.to_str())["model"]["vocab"]
    return [(piece, float(score)) for piece, score in vocab]


def _wordpiece(specials: list[str], words: list[str]) -> dict[str, int]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-")
    vocab = list(dict.fromkeys(specials + letters + [f"##{c}" for c in letters] + words))
    return {t: i for i, t in enumerate(vocab)}


def build_family(name: str, path: Path) -> Path:
    """A 2-layer, hidden-32 model of family `name` with its tokenizer, saved to `path`."""
    import transformers as tf

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    words = sorted({w for line in CORPUS for w in line.split()})
    if name in ("bert", "electra", "bert-chinese", "distilbert"):
        extra = list("北京上海张三李四去了在见这部电影很好看") if name == "bert-chinese" else []
        tokenizer = tf.BertTokenizer(vocab=_wordpiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], words + extra),
                                     do_lower_case=True)
        if name == "distilbert":
            tokenizer = tf.DistilBertTokenizer(vocab=_wordpiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], words),
                                               do_lower_case=True)
    elif name == "mpnet":
        tokenizer = tf.MPNetTokenizer(vocab=_wordpiece(["<s>", "<pad>", "</s>", "[UNK]", "<mask>"], words))
    elif name == "roberta":
        vocab, merges = _bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        tokenizer = tf.RobertaTokenizer(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges])
    elif name == "modernbert":
        vocab, merges = _bpe(["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"])
        tokenizer = _modernbert_tokenizer(vocab, merges)
    elif name == "xlm-roberta":
        pieces = _unigram(["<unk>", "<s>", "<pad>", "</s>", "<mask>"])
        order = ["<s>", "<pad>", "</s>", "<unk>"]
        vocab = [(p, 0.0) for p in order] + [(p, s) for p, s in pieces if p not in order]
        tokenizer = tf.XLMRobertaTokenizer(vocab=vocab)
    elif name == "albert":
        pieces = _unigram(["<unk>", "<pad>", "[CLS]", "[SEP]", "[MASK]"])
        tokenizer = tf.AlbertTokenizer(vocab=pieces, do_lower_case=True)
    elif name == "deberta-v2":
        pieces = _unigram(["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"])
        order = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        vocab = [(p, 0.0) for p in order] + [(p, s) for p, s in pieces if p not in order]
        tokenizer = tf.DebertaV2Tokenizer(vocab=vocab)
    else:
        raise ValueError(name)
    n = len(tokenizer)
    configs = {
        "bert": lambda: tf.BertConfig(vocab_size=n, max_position_embeddings=64, **SIZE),
        "bert-chinese": lambda: tf.BertConfig(vocab_size=n, max_position_embeddings=64, **SIZE),
        "electra": lambda: tf.ElectraConfig(vocab_size=n, embedding_size=16, max_position_embeddings=64, **SIZE),
        "mpnet": lambda: tf.MPNetConfig(vocab_size=n, max_position_embeddings=66, **SIZE),
        "roberta": lambda: tf.RobertaConfig(vocab_size=n, max_position_embeddings=66, pad_token_id=1, **SIZE),
        "xlm-roberta": lambda: tf.XLMRobertaConfig(vocab_size=n, max_position_embeddings=66, pad_token_id=1,
                                                   type_vocab_size=1, **SIZE),
        "distilbert": lambda: tf.DistilBertConfig(vocab_size=n, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                                  max_position_embeddings=64),
        "albert": lambda: tf.AlbertConfig(vocab_size=n, embedding_size=16, max_position_embeddings=64,
                                          pad_token_id=tokenizer.pad_token_id, **SIZE),
        "deberta-v2": lambda: tf.DebertaV2Config(vocab_size=n, max_position_embeddings=64, relative_attention=True,
                                                 pos_att_type=["p2c", "c2p"], position_biased_input=False,
                                                 type_vocab_size=0, **SIZE),
        "modernbert": lambda: tf.ModernBertConfig(vocab_size=n, max_position_embeddings=64,
                                                  pad_token_id=tokenizer.pad_token_id,
                                                  cls_token_id=tokenizer.cls_token_id,
                                                  sep_token_id=tokenizer.sep_token_id,
                                                  bos_token_id=tokenizer.cls_token_id,
                                                  eos_token_id=tokenizer.sep_token_id, global_attn_every_n_layers=1,
                                                  local_attention=16, **SIZE),
    }
    model = tf.AutoModel.from_config(configs[name]())
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _modernbert_tokenizer(vocab: dict[str, int], merges: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                   pad_token="[PAD]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "attention_mask"])
