"""The run report: one self-contained HTML file (plots as inline SVG, no script, no network) of what a
training run did and what to do next.

Sections: summary; learning curves (training and dev loss, the primary dev metric, best checkpoint and
early stop marked); a plain-words diagnosis (overfitting, under-training, a stuck loss) with what to try;
learning rate and throughput; and, from the dev outputs the run saved, per-task views: confusion matrix,
per-class precision/recall/F1, calibration (reliability diagram, ECE before and after temperature
scaling) and the highest-loss dev examples for classification; scatter and largest errors for regression.
"""

from __future__ import annotations

import html
import io
import re
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertkit.config import RunConfig
from bertkit.run_dir import RunDir, atomic_write_text
from bertkit.tasks.base import get_task
from bertkit.tasks.calibration import reliability, softmax
from bertkit.tasks.metrics import higher_is_better
from bertkit.tasks.squad import exact_match, normalize_answer
from bertkit.tasks.squad import f1 as squad_f1
from bertkit.tasks.tagging import entity_scores, get_entities

__all__ = ["write_report", "render_report", "diagnose", "REPORT_FILE"]

REPORT_FILE = "report.html"
_BEST, _STOP, _TRAIN, _DEV = "#2a7", "#c33", "#36c", "#e80"


@dataclass
class Finding:
    """One diagnosis: what the curves show and what to try."""

    kind: str  # overfitting | growing_gap | still_improving | stuck | healthy
    what: str
    advice: str


# --- diagnosis ------------------------------------------------------------------------------------------
def diagnose(records: list[dict[str, Any]], metric: str, greater_is_better: bool, best_step: int | None
             ) -> list[Finding]:
    """Read the learning curves like a person would: did the dev metric fall after its best, did the gap
    between training and dev loss grow, was the model still improving, did the loss move at all?"""
    evals = [r for r in records if r.get("kind") == "eval" and f"dev_{metric}" in r]
    trains = [r for r in records if r.get("kind") == "train"]
    findings: list[Finding] = []
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
        elif best_i == len(values) - 1 and len(values) >= 3 and sign * (values[-1] - values[-2]) > 0.002 * (
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


def _train_loss_at(trains: list[dict[str, Any]], step: int) -> float:
    """The training loss logged nearest to `step` (its window ends at or before it when possible)."""
    before = [r for r in trains if r["step"] <= step]
    return (before[-1] if before else trains[0])["loss"]


# --- plots ----------------------------------------------------------------------------------------------
def to_svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    with warnings.catch_warnings():  # text stays text in the SVG: the browser draws any script (labels in Chinese)
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})  # the same run, the same page
    plt.close(fig)
    text = buf.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)  # creator/date RDF: not needed inline
    return text[text.index("<svg"):]


def new_figure(width: float = 7.5, height: float = 3.2, ncols: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "bertkit", "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False})
    return plt.subplots(1, ncols, figsize=(width, height))


def mark_steps(ax, best_step: int | None, stop_step: int | None) -> None:
    if best_step is not None:
        ax.axvline(best_step, color=_BEST, linestyle="--", linewidth=1, label=f"best checkpoint (step {best_step})")
    if stop_step is not None:
        ax.axvline(stop_step, color=_STOP, linestyle=":", linewidth=1.2, label=f"early stop (step {stop_step})")


def _curves(records, metric: str, best_step, stop_step) -> str:
    trains = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    fig, (left, right) = new_figure(9.5, 3.3, 2)
    left.plot([r["step"] for r in trains], [r["loss"] for r in trains], color=_TRAIN, label="training loss")
    dev_loss = [(r["step"], r["dev_loss"]) for r in evals if "dev_loss" in r]
    if dev_loss:
        left.plot(*zip(*dev_loss), color=_DEV, marker="o", markersize=3, label="dev loss")
    left.set_xlabel("step")
    left.set_title("Loss")
    mark_steps(left, best_step, stop_step)
    left.legend(frameon=False)
    values = [(r["step"], r[f"dev_{metric}"]) for r in evals if f"dev_{metric}" in r]
    if values:
        right.plot(*zip(*values), color=_DEV, marker="o", markersize=3, label=f"dev {metric}")
    right.set_xlabel("step")
    right.set_title(f"Dev {metric}")
    mark_steps(right, best_step, stop_step)
    right.legend(frameon=False)
    return to_svg(fig)


def _schedule(records) -> str:
    trains = [r for r in records if r.get("kind") == "train"]
    fig, (left, right) = new_figure(9.5, 2.6, 2)
    left.plot([r["step"] for r in trains], [r["lr"] for r in trains], color=_TRAIN)
    left.set_title("Learning rate")
    left.set_xlabel("step")
    right.plot([r["step"] for r in trains], [r.get("tokens_per_s", 0) for r in trains], color=_TRAIN)
    right.set_title("Throughput (real tokens/s, all processes)")
    right.set_xlabel("step")
    return to_svg(fig)


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
    for bins, colour, name, shift in ((before, "#bbb", "before", -width / 4), (after, _TRAIN, "after", width / 4)):
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


def _scatter(gold: np.ndarray, pred: np.ndarray) -> str:
    fig, ax = new_figure(4.4, 4.2)
    ax.scatter(gold, pred, s=6, alpha=0.5, color=_TRAIN)
    low, high = float(min(gold.min(), pred.min())), float(max(gold.max(), pred.max()))
    ax.plot([low, high], [low, high], color="#888", linewidth=1)
    ax.set_xlabel("gold")
    ax.set_ylabel("predicted")
    ax.set_title("Predictions against gold (dev)")
    return to_svg(fig)


# --- per-task sections ----------------------------------------------------------------------------------
def html_table(header: list[str] | None, rows: list[list[Any]], cls: str = "") -> str:
    head = "<thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr></thead>" if header \
        else ""
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}">{head}<tbody>{body}</tbody></table>'


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def per_class_scores(gold: np.ndarray, pred: np.ndarray, n: int) -> list[tuple[float, float, float, int]]:
    """(precision, recall, F1, support) of each class; 0 where a ratio is undefined (as scikit-learn's
    zero_division=0)."""
    out = []
    for c in range(n):
        tp = int(((pred == c) & (gold == c)).sum())
        predicted, support = int((pred == c).sum()), int((gold == c).sum())
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        out.append((p, r, 2 * p * r / (p + r) if p + r else 0.0, support))
    return out


def _classification_section(task: Any, results: dict[str, Any], logits: np.ndarray,
                            examples: list[dict[str, Any]], top: int) -> str:
    labels, problem = task.labels, task.problem
    parts = []
    if problem == "regression":
        gold = np.array([float(ex["label"]) for ex in examples])
        pred = logits[:, 0].astype(np.float64)
        parts.append(plot_block(_scatter(gold, pred)))
        worst = np.argsort(-(pred - gold) ** 2)[:top]
        parts.append("<h3>Largest errors on dev</h3>" + html_table(
            ["where", "text", "gold", "predicted", "squared error"],
            [[examples[i]["where"], _short(examples[i]), float(gold[i]), float(pred[i]),
              float((pred[i] - gold[i]) ** 2)] for i in worst]))
        return "".join(parts)
    if problem == "multi_label":
        threshold = task.threshold
        probs = task.probabilities(logits)
        gold = np.array([task.encode_label(ex["label"]) for ex in examples]) > 0.5
        pred = probs >= threshold
        rows = [[name, *per_class_scores(gold[:, c].astype(int), pred[:, c].astype(int), 2)[1]]
                for c, name in enumerate(labels)]
        parts.append(f"<h3>Per label (threshold {threshold})</h3>" + html_table(
            ["label", "precision", "recall", "F1", "support"], rows))
        bce = -(gold * np.log(np.clip(probs, 1e-12, 1)) + ~gold * np.log(np.clip(1 - probs, 1e-12, 1))).mean(1)
        worst = np.argsort(-bce)[:top]
        parts.append("<h3>Highest-loss dev examples</h3>" + html_table(
            ["where", "text", "gold", "predicted", "loss"],
            [[examples[i]["where"], _short(examples[i]), ", ".join(labels[c] for c in np.flatnonzero(gold[i])),
              ", ".join(labels[c] for c in np.flatnonzero(pred[i])), float(bce[i])] for i in worst]))
        return "".join(parts)
    gold = np.array([task.encode_label(ex["label"]) for ex in examples])
    calibration = results.get("calibration") or {}
    temperature = float(calibration.get("temperature", 1.0))
    probs = softmax(logits, temperature)
    pred = probs.argmax(1)
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    np.add.at(matrix, (gold, pred), 1)
    parts.append(plot_block(_confusion(matrix, labels)))
    scores = per_class_scores(gold, pred, len(labels))
    parts.append("<h3>Per class</h3>" + html_table(["class", "precision", "recall", "F1", "support"],
                                               [[name, *s] for name, s in zip(labels, scores)]))
    before, after = reliability(softmax(logits), gold), reliability(probs, gold)
    parts.append("<h3>Calibration</h3>" + plot_block(_reliability_plot(before, after)) + (
        f"<p>Expected calibration error (15 equal-width bins) on dev: <b>{before.ece:.4f}</b> before and "
        f"<b>{after.ece:.4f}</b> after temperature scaling with T = {temperature:.3f}, fitted on dev and folded "
        "into the saved model's output layer (the predicted class never changes, only the confidence).</p>"
        if calibration else "<p>No temperature was fitted for this run.</p>"))
    loss = -np.log(np.clip(probs[np.arange(len(gold)), gold], 1e-12, 1))
    worst = np.argsort(-loss)[:top]
    parts.append("<h3>Highest-loss dev examples</h3>" + html_table(
        ["where", "text", "gold", "predicted", "p(gold)", "loss"],
        [[examples[i]["where"], _short(examples[i]), labels[gold[i]], labels[pred[i]],
          float(probs[i, gold[i]]), float(loss[i])] for i in worst]))
    return "".join(parts)


def entity_errors(gold_tags: list[list[str]], pred_tags: list[list[str]]) -> Counter[str]:
    """Counts of the ways predicted entities differ from gold ones: a type error (same span, other type),
    a boundary error (overlapping span, same type), both, a missed entity (nothing overlaps) and a
    spurious one (no gold entity overlaps)."""
    errors: Counter[str] = Counter()
    for gold_seq, pred_seq in zip(gold_tags, pred_tags):
        gold, pred = set(get_entities(gold_seq)), set(get_entities(pred_seq))
        for kind, start, end in gold - pred:
            overlap = [p for p in pred - gold if p[1] <= end and start <= p[2]]
            if not overlap:
                errors[f"missed {kind}"] += 1
            elif any((p[1], p[2]) == (start, end) for p in overlap):
                errors[f"type: {kind} read as {next(p[0] for p in overlap if (p[1], p[2]) == (start, end))}"] += 1
            elif any(p[0] == kind for p in overlap):
                errors[f"boundary: {kind} span cut or stretched"] += 1
            else:
                errors[f"boundary and type: {kind} read as {overlap[0][0]}"] += 1
        for kind, start, end in pred - gold:
            if not any(g[1] <= end and start <= g[2] for g in gold):
                errors[f"spurious {kind}"] += 1
    return errors


def _ner_section(labels: list[str], flat: np.ndarray, lengths: np.ndarray, examples: list[dict[str, Any]],
                 top: int) -> str:
    logits = np.split(flat, np.cumsum(lengths)[:-1])
    pred_tags = [[labels[k] for k in row.argmax(-1)] for row in logits]
    gold_tags = [ex["tags"] for ex in examples]
    scores = entity_scores(gold_tags, pred_tags)
    types = sorted({k[: -len("_f1")] for k in scores if k.endswith("_f1") and k != "f1"})
    support = Counter(kind for tags in gold_tags for kind, _, _ in get_entities(tags))
    parts = ["<h3>Per entity type</h3>" + html_table(
        ["type", "precision", "recall", "F1", "gold entities"],
        [[t, scores[f"{t}_precision"], scores[f"{t}_recall"], scores[f"{t}_f1"], support.get(t, 0)] for t in types]
        + [["all (micro)", scores["precision"], scores["recall"], scores["f1"], sum(support.values())]])]
    errors = entity_errors(gold_tags, pred_tags)
    if errors:
        fig, ax = new_figure(7.5, 0.35 * min(len(errors), top) + 1.0)
        common = errors.most_common(top)[::-1]
        ax.barh([name for name, _ in common], [n for _, n in common], color=_DEV)
        ax.set_xlabel("count on dev")
        ax.set_title("Most frequent entity errors")
        parts.append("<h3>Most frequent errors</h3>" + plot_block(to_svg(fig)))
    index = {name: i for i, name in enumerate(labels)}
    losses = []
    for row, tags in zip(logits, gold_tags):
        gold = [index.get(t, 0) for t in tags[: len(row)]]
        p_gold = softmax(row)[np.arange(len(gold)), gold]
        losses.append(float(-np.log(np.clip(p_gold, 1e-12, 1)).mean()) if gold else 0.0)
    worst = np.argsort(-np.array(losses))[:top]
    parts.append("<h3>Highest-loss dev sentences</h3>" + html_table(
        ["where", "sentence", "gold entities", "predicted entities", "loss"],
        [[examples[i].get("where", i), " ".join(examples[i]["tokens"])[:200], _entities(examples[i]["tokens"],
          gold_tags[i]), _entities(examples[i]["tokens"], pred_tags[i]), losses[i]] for i in worst]))
    return "".join(parts)


def _entities(tokens: list[str], tags: list[str]) -> str:
    return "; ".join(f"{kind}: {' '.join(tokens[s:e + 1])}" for kind, s, e in get_entities(tags)) or "-"


_WH = ("what", "who", "whom", "whose", "when", "where", "why", "which", "how")


def question_type(question: str) -> str:
    """The question's wh-word ('how many' and 'how much' apart from 'how'), or 'other'."""
    words = normalize_answer(question).split()
    for i, w in enumerate(words[:4]):
        if w == "how" and i + 1 < len(words) and words[i + 1] in ("many", "much"):
            return f"how {words[i + 1]}"
        if w in _WH:
            return {"whom": "who", "whose": "who"}.get(w, w)
    return "other"


def answer_length_bucket(answers: list[dict[str, Any]]) -> str:
    if not answers:
        return "no answer"
    n = len(normalize_answer(answers[0]["text"]).split())
    return "1 word" if n <= 1 else "2-3 words" if n <= 3 else "4-6 words" if n <= 6 else "7+ words"


def _qa_section(predictions: list[dict[str, Any]], examples: list[dict[str, Any]], top: int) -> str:
    by_id = {p["id"]: p for p in predictions}
    rows = []
    for ex in examples:
        pred = by_id.get(ex["id"], {"answer": "", "score": 0.0})
        golds = [a["text"] for a in ex["answers"]] or [""]
        rows.append({"ex": ex, "answer": pred["answer"], "score": float(pred.get("score", 0.0)),
                     "em": max(exact_match(pred["answer"], g) for g in golds),
                     "f1": max(squad_f1(pred["answer"], g) for g in golds),
                     "type": question_type(ex["question"]), "length": answer_length_bucket(ex["answers"])})
    parts = []
    order = {"length": ["1 word", "2-3 words", "4-6 words", "7+ words", "no answer"]}
    fig, axes = new_figure(9.5, 3.0, 2)
    for ax, key, title in zip(axes, ("type", "length"), ("question type", "gold answer length")):
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            groups.setdefault(r[key], []).append(r)
        names = [n for n in order.get(key, sorted(groups, key=lambda g: -len(groups[g]))) if n in groups]
        table = [[n, len(groups[n]), 100 * np.mean([r["em"] for r in groups[n]]),
                  100 * np.mean([r["f1"] for r in groups[n]])] for n in names]
        parts.append(f"<h3>By {title}</h3>" + html_table([title, "questions", "EM", "F1"], table))
        ax.bar(names, [t[3] for t in table], color=_TRAIN)
        ax.set_title(f"F1 by {title}")
        ax.set_ylim(0, 100)
        ax.tick_params(axis="x", rotation=45)
    parts.insert(0, plot_block(to_svg(fig)))
    worst = sorted(range(len(rows)), key=lambda i: (rows[i]["f1"], -rows[i]["score"]))[:top]
    parts.append("<h3>Worst-answered dev questions</h3><p>Lowest F1 first, the most confident among equals "
                 "(QA keeps no per-question loss).</p>" + html_table(
                     ["id", "question", "gold", "predicted", "confidence", "F1"],
                     [[rows[i]["ex"]["id"], rows[i]["ex"]["question"],
                       " | ".join(a["text"] for a in rows[i]["ex"]["answers"]) or "(none)",
                       rows[i]["answer"] or "(none)", rows[i]["score"], rows[i]["f1"]] for i in worst]))
    return "".join(parts)


def _short(example: dict[str, Any], limit: int = 200) -> str:
    text = example.get("text", "")
    if "text_pair" in example:
        text = f"{text} ||| {example['text_pair']}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plot_block(svg: str) -> str:
    return f'<figure class="plot">{svg}</figure>'


# --- the page -------------------------------------------------------------------------------------------
PAGE_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.8em}h3{font-size:1em}table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}th{background:#f6f6f6}
figure.plot{margin:.5em 0}figure.plot svg{max-width:100%;height:auto}.finding{border-left:4px solid #e80;
padding:.3em .8em;margin:.6em 0;background:#fffaf2}.finding.healthy{border-color:#2a7;background:#f3fbf6}
.muted{color:#777}
"""


def render_report(run_dir: str | Path, *, top: int = 10) -> str:
    """The report of a run directory as one HTML string."""
    run = RunDir(run_dir).require()
    config = run.load_config()
    results = run.read_json("results.json", default={})
    state = run.read_json("labels.json", default={})
    records = run.read_metrics()
    status = run.status()
    task = state.get("task", config.task.name)
    metric = results.get("primary_metric") or _guess_metric(records)
    greater = higher_is_better(metric)
    best_step = results.get("best_step")
    stop_step = results.get("steps") if results.get("stopped_early") else None
    dev = results.get("dev") or {}

    summary = [["run", str(run.path)], ["task", f"{task} ({state.get('problem', '-')})"],
               ["model", config.model.name], ["status", status.get("status", "unknown")],
               ["steps", f"{results.get('steps', status.get('step', '?'))} (best {best_step})"],
               ["training time", f"{results.get('train_seconds', '?')} s"],
               ["dev", ", ".join(f"{k} {v:.4f}" for k, v in dev.items()) or "-"]]
    body = [f"<h1>bertkit run report: {html.escape(run.path.name)}</h1>", html_table(None, summary, "summary")]
    if records:
        body.append("<h2>Learning curves</h2>" + plot_block(_curves(records, metric, best_step, stop_step)))
        body.append("<h2>Diagnosis</h2>")
        for f in diagnose(records, metric, greater, best_step):
            body.append(f'<div class="finding {f.kind}"><p><b>{html.escape(f.what)}</b></p>'
                        f"<p>What to try: {html.escape(f.advice)}</p></div>")
        body.append("<h2>Learning rate and throughput</h2>" + plot_block(_schedule(records)))
    else:
        body.append('<p class="muted">No training records yet (metrics.jsonl is empty).</p>')
    body.append(_dev_section(run, config, state, results, top))
    title = html.escape(f"bertkit report: {run.path.name}")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{PAGE_STYLE}</style></head><body>{''.join(body)}</body></html>\n")


# --- the dev set in detail, from what the run saved -----------------------------------------------------
@dataclass
class DevData:
    """What a run saved of its final model on dev, for a task's view of it."""

    task: Any  # the fitted task plug-in
    results: dict[str, Any]
    examples: list[dict[str, Any]]
    arrays: dict[str, np.ndarray]  # dev_outputs.npz: "outputs", or "outputs_flat" and "lengths"
    predictions: list[dict[str, Any]] | None
    top: int


def _classification_view(d: DevData) -> str | None:
    if "outputs" not in d.arrays:
        return None
    return _classification_section(d.task, d.results, d.arrays["outputs"], d.examples, d.top)


def _ner_view(d: DevData) -> str | None:
    if "outputs_flat" not in d.arrays or not all("tags" in ex and "tokens" in ex for ex in d.examples):
        return None
    return _ner_section(d.task.labels, d.arrays["outputs_flat"], d.arrays["lengths"], d.examples, d.top)


def _qa_view(d: DevData) -> str | None:
    return None if d.predictions is None else _qa_section(d.predictions, d.examples, d.top)


#: The per-task views of the dev set, by task name: a new task adds its view here (one function, one line).
TASK_VIEWS: dict[str, Callable[[DevData], str | None]] = {
    "classification": _classification_view, "ner": _ner_view, "qa": _qa_view}


def _dev_section(run: RunDir, config: RunConfig, state: dict[str, Any], results: dict[str, Any], top: int) -> str:
    """The task's view of the final model on dev, from the files the run saved."""
    view = TASK_VIEWS.get(config.task.name)
    if view is None:
        return ""
    saved = run.read_dev_outputs()
    body = None
    if saved is not None:
        examples, arrays, predictions = saved
        body = view(DevData(get_task(config.task, state), results, examples, arrays, predictions, top))
    if body is None:
        return ('<p class="muted">This run saved no dev outputs (trained before bertkit wrote them); train it '
                "again for the per-task views of the dev set.</p>")
    return "<h2>Dev set in detail</h2>" + body


def _guess_metric(records: list[dict[str, Any]]) -> str:
    for r in records:
        if r.get("kind") == "eval":
            names = [k[4:] for k in r if k.startswith("dev_") and k != "dev_loss"]
            if names:
                return names[0]
    return "loss"


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report (default `RUN/report.html`) atomically; returns its path."""
    path = Path(out) if out else Path(run_dir) / REPORT_FILE
    atomic_write_text(path, render_report(run_dir))
    return path

