"""Run a bertkit training for a benchmark and split its time into training and evaluation."""

from __future__ import annotations

import json
import tempfile
import time
from typing import Any


def timed_train(overrides: dict[str, Any], keep: str | None = None) -> dict[str, Any]:
    """Train with `RunConfig` overrides (dotted keys); returns the dev metrics, training seconds without the
    evaluations, evaluation seconds, wall seconds and the median real tokens/s of the logged steps.
    The run directory is kept at `keep` when given, else deleted."""
    from bertkit.api import train
    from bertkit.config import RunConfig

    with tempfile.TemporaryDirectory() as tmp:
        out = keep or f"{tmp}/run"
        cfg = RunConfig().with_overrides({"out": out, "train.eval_every": 10**9, **overrides})
        start = time.perf_counter()
        result = train(cfg, progress=False)
        wall = time.perf_counter() - start
        with open(f"{out}/metrics.jsonl", encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh]
    eval_s = sum(r.get("eval_seconds", 0) for r in records if r["kind"] == "eval")
    tok_s = sorted(r["tokens_per_s"] for r in records if r["kind"] == "train")
    return {"metrics": result.metrics, "train_seconds": round(result.train_seconds - eval_s, 1),
            "eval_seconds": round(eval_s, 1), "wall_seconds": round(wall, 1),
            "median_tokens_per_s": round(tok_s[len(tok_s) // 2]) if tok_s else None}
