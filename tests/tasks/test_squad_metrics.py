"""The official SQuAD scoring, on hand-computed cases."""

import pytest

from bertkit.tasks.squad_metrics import best_null_threshold, exact_match, f1, normalize_answer, squad_scores


def test_normalisation_drops_case_punctuation_articles_and_spaces():
    assert normalize_answer("  The Denver   Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"


@pytest.mark.parametrize("pred,gold,em,f", [
    ("Denver Broncos", "the Denver Broncos", 1.0, 1.0),
    ("Denver", "Denver Broncos", 0.0, 2 * (1.0 * 0.5) / 1.5),  # P=1, R=1/2 -> F1=2/3
    ("the Broncos of Denver", "Denver Broncos", 0.0, 2 * (2 / 3 * 1.0) / (2 / 3 + 1.0)),  # P=2/3, R=1 -> 0.8
    ("Carolina", "Denver Broncos", 0.0, 0.0),
    ("", "", 1.0, 1.0),
    ("", "Denver", 0.0, 0.0),
])
def test_em_and_f1(pred, gold, em, f):
    assert exact_match(pred, gold) == em
    assert f1(pred, gold) == pytest.approx(f)


def test_max_over_golds_and_v2_breakdown():
    scores = squad_scores(["Denver", "", "Santa Clara"], [["Broncos", "Denver"], [], ["Levi's Stadium"]],
                          with_no_answer=True)
    assert scores["exact_match"] == pytest.approx(200 / 3)
    assert scores["f1"] == pytest.approx(200 / 3)
    assert scores["HasAns_exact_match"] == 50.0 and scores["NoAns_exact_match"] == 100.0
    assert scores["HasAns_total"] == 2.0 and scores["NoAns_total"] == 1.0


def test_null_threshold_sweep():
    # margins: no-answer score minus best span score; answered iff margin <= threshold
    margins = [-3.0, -1.0, 0.5, 2.0]
    f1_if_answered = [1.0, 0.0, 1.0, 0.0]
    has_answer = [True, False, True, False]
    t = best_null_threshold(margins, f1_if_answered, has_answer)
    answered = [m <= t for m in margins]
    total = sum(f if a else (0.0 if h else 1.0) for a, f, h in zip(answered, f1_if_answered, has_answer))
    # totals by threshold: below -3: 2; [-3, -1): 3; [-1, 0.5): 2; [0.5, 2): 3; from 2: 2
    assert total == 3.0 and t == -3.0  # the first threshold that reaches the best total
