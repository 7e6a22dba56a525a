"""Labels that look wrong: each example is scored by a quick model that never saw it (frozen sentence
vectors of the encoder + logistic regression, k-fold out-of-fold), and cleanlab's confident learning ranks
the examples whose given label those scores contradict (Northcutt et al., 2021). Minutes on a CPU; a list
for a person to read, not labels to change blindly."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from bertkit.data.checks import labels_of, text_of
from bertkit.errors import BertkitError, ConfigError
from bertkit.models.loading import load_encoder, load_tokenizer

__all__ = ["sentence_vectors", "out_of_fold_probabilities", "find_label_errors"]

log = logging.getLogger("bertkit")


@torch.inference_mode()
def sentence_vectors(texts: Sequence[str], model_name: str, *, max_length: int = 256, batch_size: int = 64
                     ) -> np.ndarray:
    """(N, H) unit vectors: the mean of the encoder's last hidden states over each text's tokens (the
    pooling the embedded MiniLM was trained for), computed in length-sorted batches."""
    tokenizer, model = load_tokenizer(model_name), load_encoder(model_name)
    order = np.argsort([len(t) for t in texts])
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt")
        hidden = model(**enc).last_hidden_state  # (B, T, H)
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        out[idx] = torch.nn.functional.normalize(mean, dim=-1).numpy()
    return out


def out_of_fold_probabilities(vectors: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0
                              ) -> np.ndarray:
    """(N, C) class probabilities of each example from a logistic regression fitted on the other folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    counts = np.bincount(labels)
    if (counts > 0).sum() < 2:
        raise ConfigError("finding label errors needs at least two labels (a model of the other rows must be able "
                          "to disagree); this data has one")
    folds = min(folds, int(counts[counts > 0].min()))
    if folds < 2:
        raise ConfigError("finding label errors needs at least two examples of every label (it scores each "
                          "example with a model fitted on the others)")
    model = LogisticRegression(max_iter=2000, C=4.0)
    return cross_val_predict(model, vectors, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                             method="predict_proba")


def find_label_errors(examples: Sequence[dict[str, Any]], model_name: str, *, folds: int = 5, seed: int = 0,
                      max_length: int = 256) -> list[dict[str, Any]]:
    """The examples whose label the out-of-fold model contradicts, most confident first: where, text, the
    given label, the suggested one and the model's probability of each."""
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        raise BertkitError("finding label errors needs cleanlab and scikit-learn: "
                           'pip install "bertkit[data]"') from None
    names = [labels_of(ex) for ex in examples]
    if any(len(n) != 1 for n in names):
        raise ConfigError("--find-label-errors reads single-label classification data (one label a row)")
    classes = sorted({n[0] for n in names})
    y = np.array([classes.index(n[0]) for n in names])
    log.info("label errors: sentence vectors of %d examples from %s, then %d-fold logistic regression",
             len(examples), model_name, folds)
    probs = out_of_fold_probabilities(sentence_vectors([text_of(ex) for ex in examples], model_name,
                                                       max_length=max_length), y, folds=folds, seed=seed)
    ranked = find_label_issues(labels=y, pred_probs=probs, return_indices_ranked_by="self_confidence")
    return [{"where": examples[i].get("where", str(i)), "text": text_of(examples[i]), "label": classes[y[i]],
             "suggested": classes[int(probs[i].argmax())], "confidence": float(probs[i].max()),
             "given_probability": float(probs[i, y[i]])} for i in ranked]
