"""Tag schemes and entity metrics, oracle-tested against seqeval on constructed and random sequences."""

import itertools
import random

import numpy as np
import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities as seqeval_entities
from seqeval.scheme import IOB2

from bertkit.errors import DataError
from bertkit.tasks.tagging import bio_decode, bio_labels, detect_scheme, entity_scores, get_entities, to_bio

CONSTRUCTED = [
    ["B-PER", "I-PER", "O", "B-LOC"],
    ["I-PER", "I-PER", "O", "I-LOC", "B-LOC"],  # entities opened by I- (invalid IOB2)
    ["B-PER", "I-LOC", "I-LOC", "O"],  # type change inside
    ["O", "O", "O"],
    ["B-ORG", "B-ORG", "I-ORG", "I-PER"],
]


def _random_sequences(n, seed):
    rng = random.Random(seed)
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    return [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(n)]


@pytest.mark.parametrize("seq", CONSTRUCTED + _random_sequences(200, 0))
def test_default_entities_match_seqeval(seq):
    assert get_entities(seq) == seqeval_entities(seq)


@pytest.mark.parametrize("strict", [False, True])
def test_scores_match_seqeval_on_random_corpora(strict):
    refs = _random_sequences(300, 1)
    preds = [[t if random.Random(i * 7 + j).random() < 0.8 else "I-PER" for j, t in enumerate(seq)]
             for i, seq in enumerate(refs)]
    kwargs = {"mode": "strict", "scheme": IOB2} if strict else {}
    ours = entity_scores(refs, preds, strict=strict)
    assert ours["precision"] == pytest.approx(precision_score(refs, preds, **kwargs))
    assert ours["recall"] == pytest.approx(recall_score(refs, preds, **kwargs))
    assert ours["f1"] == pytest.approx(f1_score(refs, preds, **kwargs))
    report = classification_report(refs, preds, output_dict=True, zero_division=0, **kwargs)
    for kind in ("PER", "LOC", "MISC"):
        assert ours[f"{kind}_f1"] == pytest.approx(report[kind]["f1-score"])
        assert ours[f"{kind}_precision"] == pytest.approx(report[kind]["precision"])


def test_scheme_detection_and_conversion():
    iob1 = [["I-PER", "I-PER", "B-PER", "O", "I-LOC"]]
    assert detect_scheme(iob1) == "iob1"
    assert to_bio(iob1[0], "iob1") == ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]
    iobes = [["B-PER", "E-PER", "S-LOC", "O"]]
    assert detect_scheme(iobes) == "iobes"
    assert to_bio(iobes[0], "iobes") == ["B-PER", "I-PER", "B-LOC", "O"]
    bilou = [["U-ORG", "B-PER", "I-PER", "L-PER"]]
    assert detect_scheme(bilou) == "bilou"
    assert to_bio(bilou[0], "bilou") == ["B-ORG", "B-PER", "I-PER", "I-PER"]
    assert detect_scheme([["B-PER", "I-PER", "O", "I-LOC"]]) == "iob2"


def test_invalid_iob2_is_repaired_or_rejected_with_location():
    assert to_bio(["O", "I-LOC", "I-LOC"], "iob2") == ["O", "B-LOC", "I-LOC"]
    with pytest.raises(DataError, match=r"train.conll:12: tag 2 'I-LOC'"):
        to_bio(["O", "I-LOC"], "iob2", repair=False, where="train.conll:12")


def test_label_list_order():
    assert bio_labels(["PER", "LOC", "PER"]) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_scores_match_seqeval_on_real_conll_tags():
    from bertkit.data.conll import read_conll
    from conftest import SHARED_DATA

    path = SHARED_DATA / "conll2003" / "valid.txt"
    if not path.is_file():
        pytest.skip(f"{path} is absent (CoNLL-2003 is not shipped with the repository)")
    refs = [s.tags for s in read_conll(path)][:1500]
    rng = random.Random(3)
    kinds = ["PER", "LOC", "ORG", "MISC"]
    preds = [[t if rng.random() < 0.9 else rng.choice(["O", f"I-{rng.choice(kinds)}", f"B-{rng.choice(kinds)}"])
              for t in seq] for seq in refs]
    for strict, kwargs in ((False, {}), (True, {"mode": "strict", "scheme": IOB2})):
        ours = entity_scores(refs, preds, strict=strict)
        assert ours["f1"] == pytest.approx(f1_score(refs, preds, **kwargs))
        report = classification_report(refs, preds, output_dict=True, **kwargs)
        for kind in kinds:
            assert ours[f"{kind}_recall"] == pytest.approx(report[kind]["recall"])


@pytest.mark.parametrize("text,span,expected", [
    ("a  merkel met", (1, 9), (3, 9)),       # a SentencePiece/BPE piece with the spaces before it
    ("merkel ", (0, 7), (0, 6)),
    ("   ", (0, 3), (3, 3)),                  # whitespace only: empty
    ("paris", (0, 5), (0, 5)),                # WordPiece: unchanged
])
def test_spans_are_trimmed_to_the_token_text(text, span, expected):
    from bertkit.tasks.spans import trim_span

    assert trim_span(text, span) == expected


def _valid_bio(tags):
    return all(not t.startswith("I-") or (i > 0 and tags[i - 1][2:] == t[2:] and tags[i - 1] != "O")
               for i, t in enumerate(tags))


@pytest.mark.parametrize("seed", range(40))
def test_bio_decode_finds_the_best_valid_sequence_by_exhaustive_search(seed):
    labels = bio_labels(["LOC", "PER"])
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5))
    log_probs = np.log(rng.dirichlet(np.ones(len(labels)) * 0.3, size=n))
    best = max((seq for seq in itertools.product(range(len(labels)), repeat=n)
                if _valid_bio([labels[k] for k in seq])),
               key=lambda seq: sum(log_probs[i, k] for i, k in enumerate(seq)))
    path = bio_decode(log_probs, labels)
    assert _valid_bio([labels[k] for k in path])
    def total(seq):
        return sum(log_probs[i, k] for i, k in enumerate(seq))

    assert np.isclose(total(path), total(best))


def test_bio_decode_keeps_a_valid_argmax_and_mends_an_entity_opened_by_i():
    labels = bio_labels(["PER"])  # O, B-PER, I-PER
    valid = np.log(np.array([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]]))
    assert bio_decode(valid, labels).tolist() == valid.argmax(-1).tolist()
    # argmax would open the entity with I-PER; B-PER is nearly as likely there, O far less
    opened_by_i = np.log(np.array([[0.05, 0.45, 0.5], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]]))
    assert [labels[k] for k in bio_decode(opened_by_i, labels)] == ["B-PER", "I-PER", "O"]
    assert bio_decode(np.zeros((0, 3)), labels).tolist() == []
