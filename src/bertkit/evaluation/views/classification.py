"""The run report's view of a classification run's dev set, by problem: single-label (confusion matrix,
per-class scores, calibration, highest-loss examples), multi-label (per-label scores at the tuned threshold)
and regression (gold against predicted, largest errors)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bertkit.evaluation.html import COLOURS, DevData, html_table, new_figure, plot_block, short_text, to_svg
from bertkit.evaluation.views import register_view
from bertkit.tasks import metrics as M
from bertkit.tasks.calibration import reliability, softmax

__all__ = ["classification_view"]


@register_view("classification")
def classification_view(d: DevData) -> str | None:
    task = d.task
    if "outputs" not in d.arrays:
        return None
    view = {"single_label": _single_label, "multi_label": _multi_label, "regression": _regression}[task.problem]
    return view(task, d, d.arrays["outputs"]) + _lengths(task, d, d.arrays["outputs"])


#: Dev length buckets of the report (tokens, specials included): upper edges, the last open.
LENGTH_BUCKETS = (64, 128, 256, 512, 1024)


def _lengths(task: Any, d: DevData, logits: np.ndarray) -> str:
    """How long the inputs were against the window (a histogram of the training inputs with the window
    marked) and the dev score by input length: where a long input is read badly, it shows here."""
    train = (d.lengths or {}).get("train")
    tokens = np.array([ex.get("tokens", -1) for ex in d.examples])
    if not train or (tokens < 0).any():
        return ""
    window, mode = train["window"], getattr(task.cfg, "long_inputs", "truncate")
    if task.problem == "regression":
        name, score = "mean absolute error", np.abs(logits[:, 0] - np.array([float(ex["label"]) for ex in d.examples]))
    elif task.problem == "multi_label":
        name = "exact match"
        score = (task.kind.probabilities(logits) >= task.threshold) == task.kind.gold(task, d.examples)
        score = score.all(1).astype(float)
    else:
        name = "accuracy"
        gold = np.array([task.kind.encode(ex["label"], task.label_index) for ex in d.examples])
        score = (logits.argmax(1) == gold).astype(float)
    rows, low = [], 0
    for high in (*LENGTH_BUCKETS, None):
        inside = (tokens > low) & ((tokens <= high) if high else True)
        if inside.any():
            rows.append([f"{low + 1}-{high}" if high else f"over {low}", int(inside.sum()),
                         float(score[inside].mean()), "yes" if high and high <= window else "no"])
        low = high or low
    share = 100 * train.get("over_window_share", 0.0)
    how = {"windows": "read whole in overlapping windows, the answer the mean of their logits",
           "head-tail": "cut to their head and tail", "truncate": "cut at the window"}.get(mode, mode)
    return ("<h3>Input lengths</h3>" + plot_block(_length_histogram(train))
            + f"<p>{share:.1f} % of the training inputs are longer than the window of {window} tokens (median "
              f"{train['median']}, 90th percentile {train['p90']}, longest {train['longest']}); longer inputs are "
              f"{how} (task.long_inputs {mode}).</p>"
            + html_table(["tokens", "dev inputs", f"dev {name}", "within the window"], rows))


def _single_label(task: Any, d: DevData, logits: np.ndarray) -> str:
    """Confusion matrix, per-class scores, calibration before and after temperature scaling, and the
highest-loss dev examples."""
    labels = task.labels
    gold = np.array([task.kind.encode(ex["label"], task.label_index) for ex in d.examples])
    calibration = d.results.get("calibration") or {}
    temperature = float(calibration.get("temperature", 1.0))
    probs = softmax(logits, temperature)
    pred = probs.argmax(1)
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    np.add.at(matrix, (gold, pred), 1)
    scores = M.per_class_scores(gold, pred, len(labels))
    before, after = reliability(softmax(logits), gold), reliability(probs, gold)
    loss = -np.log(np.clip(probs[np.arange(len(gold)), gold], 1e-12, 1))
    worst = np.argsort(-loss)[: d.top]
    return "".join([
        plot_block(_confusion(matrix, labels)),
        "<h3>Per class</h3>" + html_table(["class", "precision", "recall", "F1", "support"],
                                          [[name, *s] for name, s in zip(labels, scores)]),
        "<h3>Calibration</h3>" + plot_block(_reliability_plot(before, after)) + (
            f"<p>Expected calibration error (15 equal-width bins) on dev: <b>{before.ece:.4f}</b> before and "
            f"<b>{after.ece:.4f}</b> after temperature scaling with T = {temperature:.3f}, fitted on dev and "
            "folded into the saved model's output layer (the predicted class never changes, only the "
            "confidence).</p>" if "temperature" in calibration else
            f"<p>No temperature was fitted for this run{': ' + calibration['skipped'] if calibration else ''}."
            "</p>"),
        "<h3>Highest-loss dev examples</h3>" + html_table(
            ["where", "text", "gold", "predicted", "p(gold)", "loss"],
            [[d.examples[i]["where"], short_text(d.examples[i]), labels[gold[i]], labels[pred[i]],
              float(probs[i, gold[i]]), float(loss[i])] for i in worst])])


def _multi_label(task: Any, d: DevData, logits: np.ndarray) -> str:
    """Per-label scores at the tuned threshold and the highest-loss dev examples."""
    labels, gold = task.labels, task.kind.gold(task, d.examples)
    probs = task.kind.probabilities(logits)
    pred = probs >= task.threshold
    rows = [[name, *M.per_class_scores(gold[:, c].astype(int), pred[:, c].astype(int), 2)[1]]
            for c, name in enumerate(labels)]
    bce = -(gold * np.log(np.clip(probs, 1e-12, 1)) + ~gold * np.log(np.clip(1 - probs, 1e-12, 1))).mean(1)
    worst = np.argsort(-bce)[: d.top]
    return (f"<h3>Per label (threshold {task.threshold})</h3>"
            + html_table(["label", "precision", "recall", "F1", "support"], rows)
            + "<h3>Highest-loss dev examples</h3>" + html_table(
                ["where", "text", "gold", "predicted", "loss"],
                [[d.examples[i]["where"], short_text(d.examples[i]),
                  ", ".join(labels[c] for c in np.flatnonzero(gold[i])),
                  ", ".join(labels[c] for c in np.flatnonzero(pred[i])), float(bce[i])] for i in worst]))


def _regression(task: Any, d: DevData, logits: np.ndarray) -> str:
    """Gold against predicted values, and the largest errors."""
    gold = np.array([float(ex["label"]) for ex in d.examples])
    pred = logits[:, 0].astype(np.float64)
    worst = np.argsort(-(pred - gold) ** 2)[: d.top]
    return plot_block(_scatter(gold, pred)) + "<h3>Largest errors on dev</h3>" + html_table(
        ["where", "text", "gold", "predicted", "squared error"],
        [[d.examples[i]["where"], short_text(d.examples[i]), float(gold[i]), float(pred[i]),
          float((pred[i] - gold[i]) ** 2)] for i in worst])


# --- plots of the views -----------------------------------------------------------------------------------
def _confusion(matrix: np.ndarray, labels: list[str]) -> str:
    size = min(2.2 + 0.45 * len(labels), 9)
    fig, ax = new_figure(size, size)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    top = matrix.max() or 1
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center",
                    color="white" if matrix[i, j] > top / 2 else "black")
    ax.set_title("Confusion matrix (dev)")
    return to_svg(fig)


def _reliability_plot(before, after) -> str:
    fig, ax = new_figure(4.6, 4.2)
    centres = (before.edges[:-1] + before.edges[1:]) / 2
    width = before.edges[1] - before.edges[0]
    ax.plot([0, 1], [0, 1], color="#888", linewidth=1, label="perfect calibration")
    for bins, colour, name, shift in ((before, "#bbb", "before", -width / 4),
                                      (after, COLOURS["train"], "after", width / 4)):
        filled = bins.count > 0
        ax.bar(centres[filled] + shift, bins.accuracy[filled], width=width / 2, color=colour,
               label=f"{name} (ECE {bins.ece:.4f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability (dev), temperature scaling")
    ax.legend(frameon=False, loc="upper left")
    return to_svg(fig)


def _length_histogram(train: dict[str, Any]) -> str:
    from bertkit.tasks.long_inputs import HISTOGRAM_EDGES

    counts = train.get("histogram") or []
    fig, ax = new_figure(5.2, 2.8)
    labels = [f"{a}-{b}" for a, b in zip(HISTOGRAM_EDGES, HISTOGRAM_EDGES[1:])] + [f"{HISTOGRAM_EDGES[-1]}+"]
    ax.bar(range(len(counts)), counts, color=COLOURS["train"])
    ax.set_xticks(range(len(counts)), labels[: len(counts)], rotation=45, ha="right")
    where = sum(1 for e in HISTOGRAM_EDGES[1:] if e <= train["window"]) - 0.5  # the window's bin edge
    ax.axvline(where, color="#c0392b", linewidth=1.5, label=f"window: {train['window']} tokens")
    ax.set_xlabel("tokens per training input")
    ax.set_ylabel("inputs")
    ax.legend(frameon=False)
    ax.set_title("Training input lengths")
    return to_svg(fig)


def _scatter(gold: np.ndarray, pred: np.ndarray) -> str:
    fig, ax = new_figure(4.4, 4.2)
    ax.scatter(gold, pred, s=6, alpha=0.5, color=COLOURS["train"])
    low, high = float(min(gold.min(), pred.min())), float(max(gold.max(), pred.max()))
    ax.plot([low, high], [low, high], color="#888", linewidth=1)
    ax.set_xlabel("gold")
    ax.set_ylabel("predicted")
    ax.set_title("Predictions against gold (dev)")
    return to_svg(fig)
