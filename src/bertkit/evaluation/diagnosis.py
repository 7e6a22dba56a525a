"""The diagnosis of the run report: the learning curves read in plain words, with what to try."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Finding", "diagnose"]


@dataclass
class Finding:
    """One diagnosis: what the curves show and what to try."""

    kind: str  # overfitting | growing_gap | still_improving | stuck | healthy
    what: str
    advice: str


#: Below these, the curves cannot be read: a dev set too small to select on, a run too short to learn.
SMALL_DEV, FEW_STEPS = 50, 50


def diagnose(records: list[dict[str, Any]], metric: str, greater_is_better: bool, best_step: int | None,
             *, dev_rows: int | None = None, steps: int | None = None, majority: float | None = None
             ) -> list[Finding]:
    """Read the learning curves like a person would: did the dev metric fall after its best, did the gap
    between training and dev loss grow, was the model still improving, did the loss move at all? First, what
    makes them unreadable: a dev set too small to trust, too few optimiser steps, an accuracy no better than
    always answering the commonest class (`majority`, its share of dev)."""
    evals = [r for r in records if r.get("kind") == "eval" and f"dev_{metric}" in r]
    trains = [r for r in records if r.get("kind") == "train"]
    findings = _small_data(evals, metric, dev_rows, steps, majority)
    sign = 1.0 if greater_is_better else -1.0
    if len(trains) >= 4:
        first, last = trains[0]["loss"], np.mean([r["loss"] for r in trains[-max(1, len(trains) // 5):]])
        if first > 0 and last > 0.95 * first:
            findings.append(Finding(
                "stuck", f"The training loss barely moved ({first:.4f} at first, {last:.4f} at the end).",
                "Raise --lr (or lower it if the loss jumped about), check that the labels match the texts, and "
                "look at the learning-rate plot for a warm-up that never ended."))
    if len(evals) >= 2:
        values = [r[f"dev_{metric}"] for r in evals]
        best_i = int(np.argmax([sign * v for v in values]))
        best, final = values[best_i], values[-1]
        drop = sign * (best - final)
        scale = max(abs(best), 1e-9) if not greater_is_better else 1.0
        if best_i < len(values) - 1 and drop / scale > 0.005:
            findings.append(Finding(
                "overfitting",
                f"The dev {metric} was best at step {evals[best_i]['step']} ({best:.4f}) and fell to {final:.4f} "
                f"by step {evals[-1]['step']}: past its best, the model fits the training set at the expense of "
                f"new data. The final model is the step-{best_step} checkpoint.",
                "Stop sooner (--patience 2, fewer --epochs), regularise (--weight-decay 0.05, "
                "--freeze-embeddings, LoRA with --lora-r 8), lower --lr, or add training data."))
        elif best_i == len(values) - 1 and sign * (values[-1] - values[-2]) > 0.002 * (
                1.0 if greater_is_better else max(abs(values[-2]), 1e-9)):
            findings.append(Finding(
                "still_improving",
                f"The dev {metric} was still improving at the last evaluation ({values[-2]:.4f} -> {values[-1]:.4f}).",
                "Train longer (--epochs or --max-steps); the learning-rate schedule ended before the model did."))
        losses = [(r["step"], r["dev_loss"]) for r in evals if "dev_loss" in r]
        if len(losses) >= 3 and trains:
            low_i = int(np.argmin([v for _, v in losses]))
            gaps = [dev - _train_loss_at(trains, step) for step, dev in losses]
            if low_i < len(losses) - 1 and losses[-1][1] > losses[low_i][1] * 1.05 and gaps[-1] > gaps[low_i] + 0.05:
                findings.append(Finding(
                    "growing_gap",
                    f"The dev loss was lowest at step {losses[low_i][0]} ({losses[low_i][1]:.4f}) and rose to "
                    f"{losses[-1][1]:.4f} while the training loss kept falling: the gap between them grew from "
                    f"{gaps[low_i]:.3f} to {gaps[-1]:.3f}. The model grows more confident on training examples "
                    "than on new ones.",
                    "The same remedies as for overfitting; a dev metric that still holds up while the dev loss "
                    "rises means over-confident probabilities, which the calibration below corrects."))
    if not findings:
        findings.append(Finding("healthy", "No sign of overfitting or under-training: the dev curves level off "
                                "together with the training loss.", "Nothing to change."))
    return findings


def _small_data(evals: list[dict[str, Any]], metric: str, dev_rows: int | None, steps: int | None,
                majority: float | None) -> list[Finding]:
    findings = []
    if dev_rows == 0:
        findings.append(Finding(
            "no_dev", "The run had no dev set (too few training examples to hold some out): nothing here measured "
            "the model on examples it did not train on, and the model of the last step was kept.",
            "Score it with bertkit evaluate RUN --data FILE on labelled examples it never saw, and compare "
            "settings on those; give a dev file (--dev) once there are a few hundred examples."))
    elif dev_rows is not None and dev_rows < SMALL_DEV:
        findings.append(Finding(
            "small_dev", f"The dev set has {dev_rows} examples: one example moves its accuracy by "
            f"{1 / max(dev_rows, 1):.3f}, so the dev figures and the checkpoint chosen on them are mostly chance.",
            "Give a dev file of a few hundred examples (--dev), or a larger --dev-fraction when the training "
            "file allows it, and judge the model on held-out data before using it."))
    if steps is not None and steps < FEW_STEPS:
        findings.append(Finding(
            "few_steps", f"The run took {steps} optimiser steps: too few for the model to move far from where it "
            "started.", "Train for more steps: leave --epochs and --batch-size unset (a small training set then "
            "gets at least 120 steps), or set --max-steps."))
    if majority is not None and metric == "accuracy" and evals:
        final = evals[-1][f"dev_{metric}"]
        if final <= majority + 0.02:
            findings.append(Finding(
                "majority", f"The dev accuracy ({final:.4f}) is no better than always answering the commonest class "
                f"({majority:.4f}): the model has not learned to tell the classes apart.",
                "Check the labels against the texts, train longer or with a higher --lr, and add examples of the "
                "rarer classes (or --class-weights auto)."))
    return findings


def _train_loss_at(trains: list[dict[str, Any]], step: int) -> float:
    """The training loss logged nearest to `step` (its window ends at or before it when possible)."""
    before = [r for r in trains if r["step"] <= step]
    return (before[-1] if before else trains[0])["loss"]
