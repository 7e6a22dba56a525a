"""The pieces of the HTML run report: tables, inline SVG plots and what a run saved of its dev set
(`DevData`). A task's view of its dev set (`bertkit.evaluation.views`) is made of these; the page around
them is assembled by `bertkit.evaluation.report`.
"""

from __future__ import annotations

import html
import io
import re
import warnings
from dataclasses import dataclass
from typing import Any

__all__ = ["DevData", "html_table", "plot_block", "new_figure", "to_svg", "short_text", "COLOURS"]

#: Colours of the report: best checkpoint, early stop, training curves, dev curves.
COLOURS = {"best": "#2a7", "stop": "#c33", "train": "#36c", "dev": "#e80"}


@dataclass
class DevData:
    """What a run saved of its final model on dev, for a task's view of it."""

    task: Any  # the fitted task plug-in
    results: dict[str, Any]  # results.json
    examples: list[dict[str, Any]]  # dev_examples.jsonl: each as the task records it
    arrays: dict[str, Any]  # dev_outputs.npz: "outputs", or "outputs_flat" and "lengths"
    predictions: list[dict[str, Any]] | None  # dev_predictions.jsonl
    top: int  # rows of the "worst examples" tables
    lengths: dict[str, Any] | None = None  # environment.json's data.lengths (tasks that read long inputs)


def to_svg(fig, *, fit: bool = True) -> str:
    """A matplotlib figure as inline SVG (text stays text, so the browser draws any script), then closed.

    `fit` crops the page to what was drawn, so long tick labels (class names) are never cut off; that lays
    the figure out twice. Plots whose tick labels are numbers pass `fit=False` and get fixed margins in
    inches instead: one layout, about a third less time, which every run's report pays twice."""
    import matplotlib.pyplot as plt

    if not fit:
        _fixed_margins(fig)
    buf = io.StringIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buf, format="svg", bbox_inches="tight" if fit else None,
                    metadata={"Date": None})  # the same run, the same page
    plt.close(fig)
    text = buf.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)  # creator/date RDF: not needed inline
    return text[text.index("<svg"):]


def _fixed_margins(fig, left: float = 0.6, right: float = 0.15, bottom: float = 0.48, top: float = 0.3,
                   gap: float = 0.7) -> None:
    """Margins in inches around a row of axes: room for numeric tick labels, an axis label and a title."""
    width, height = fig.get_size_inches()
    n = max(1, len(fig.axes))
    axis_width = (width - left - right - gap * (n - 1)) / n
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=gap / axis_width)


def new_figure(width: float = 7.5, height: float = 3.2, ncols: int = 1):
    """A matplotlib figure (non-interactive backend) in the report's style: (fig, axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "bertkit", "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False})
    return plt.subplots(1, ncols, figsize=(width, height))


def plot_block(svg: str) -> str:
    return f'<figure class="plot">{svg}</figure>'


def html_table(header: list[str] | None, rows: list[list[Any]], cls: str = "") -> str:
    head = "<thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr></thead>" if header \
        else ""
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}">{head}<tbody>{body}</tbody></table>'


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def short_text(example: dict[str, Any], limit: int = 200) -> str:
    """An example's text (and its pair) cut to `limit` characters for a table."""
    text = example.get("text", "")
    if "text_pair" in example:
        text = f"{text} ||| {example['text_pair']}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
