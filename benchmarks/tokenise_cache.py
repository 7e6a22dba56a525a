"""Cached tokenisation: the features of a training file without the cache, then from it.

    python benchmarks/tokenise_cache.py [--data ../shared/data/sst2/train.tsv.gz --column sentence]

Uses the same function training uses (`bertkit.training.run_data.task_features`), in a fresh temporary
cache folder. Prints one JSON object: examples, seconds to read the file, to tokenise and store (first run),
to load (second run) and to tokenise with the cache off.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "sst2" / "train.tsv.gz"))
    parser.add_argument("--column", default="sentence")
    args = parser.parse_args()
    os.environ["BERTKIT_CACHE"] = tempfile.mkdtemp(prefix="bertkit-bench-cache-")

    from bertkit.config import RunConfig
    from bertkit.data.task_files import read_examples
    from bertkit.models.init_source import resolve_init
    from bertkit.models.loading import load_tokenizer
    from bertkit.tasks.base import get_task
    from bertkit.training.run_data import task_features

    cfg = RunConfig().with_overrides({"data.text_column": args.column})
    tokenizer = load_tokenizer(resolve_init(cfg).model)
    task = get_task(cfg.task)
    start = time.perf_counter()
    examples = read_examples(task, args.data, cfg.data, tokenizer)
    out = {"examples": len(examples), "read_s": round(time.perf_counter() - start, 2)}
    task.fit(examples)
    for name in ("tokenise_and_store_s", "from_cache_s"):
        start = time.perf_counter()
        task_features(task, examples, tokenizer, cfg)
        out[name] = round(time.perf_counter() - start, 2)
    os.environ["BERTKIT_CACHE"] = "off"
    start = time.perf_counter()
    task_features(task, examples, tokenizer, cfg)
    out["cache_off_s"] = round(time.perf_counter() - start, 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
