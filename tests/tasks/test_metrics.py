"""Oracle tests: every metric against scikit-learn / SciPy on random and degenerate cases."""

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from bertkit.tasks import metrics as M


def _cases():
    rng = np.random.default_rng(0)
    for n_classes in (2, 3, 6):
        refs = rng.integers(0, n_classes, 200)
        noisy = np.where(rng.random(200) < 0.7, refs, rng.integers(0, n_classes, 200))
        yield refs, noisy
    yield np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0])  # one class never predicted
    yield np.array([2, 2, 2]), np.array([0, 1, 2])  # classes only in predictions
    yield np.array([1, 1, 1]), np.array([1, 1, 1])  # constant: MCC denominator 0


@pytest.mark.parametrize("refs,preds", list(_cases()))
def test_single_label_metrics_match_sklearn(refs, preds):
    assert M.accuracy(refs, preds) == pytest.approx(skm.accuracy_score(refs, preds))
    assert M.f1_macro(refs, preds) == pytest.approx(skm.f1_score(refs, preds, average="macro", zero_division=0))
    assert M.mcc(refs, preds) == pytest.approx(skm.matthews_corrcoef(refs, preds))
    assert M.f1_binary(refs, preds, positive=1) == pytest.approx(
        skm.f1_score(refs == 1, preds == 1, zero_division=0))


def test_multilabel_f1_matches_sklearn():
    rng = np.random.default_rng(1)
    refs = rng.random((100, 5)) < 0.3
    preds = np.where(rng.random((100, 5)) < 0.8, refs, ~refs)
    preds[:, 4] = False  # a label never predicted
    got = M.multilabel_f1(refs, preds)
    assert got["f1_micro"] == pytest.approx(skm.f1_score(refs, preds, average="micro", zero_division=0))
    assert got["f1_macro"] == pytest.approx(skm.f1_score(refs, preds, average="macro", zero_division=0))


def test_regression_metrics_match_scipy():
    rng = np.random.default_rng(2)
    refs = rng.normal(size=300)
    preds = refs + rng.normal(scale=0.5, size=300)
    preds[:20] = np.round(preds[:20])  # ties for the rank correlation
    refs[10:30] = 1.0
    assert M.pearson(refs, preds) == pytest.approx(stats.pearsonr(refs, preds)[0])
    assert M.spearman(refs, preds) == pytest.approx(stats.spearmanr(refs, preds)[0])
    assert M.mse(refs, preds) == pytest.approx(skm.mean_squared_error(refs, preds))
