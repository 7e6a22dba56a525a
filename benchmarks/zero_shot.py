"""Zero-shot classification from the embedded embedding model (no labelled examples): SST-2 and TREC-6, each
label described once in words (below, written before any scoring and not tuned), scored on the sets the
few-shot benchmark scores on (`benchmarks/few_shot.py`: SST-2's 872 GLUE dev sentences; TREC-6's 999 questions
held out with seed 0).

    python benchmarks/zero_shot.py [--data ../shared/data] [--model embedded]

One JSON line per set: accuracy, macro F1, MCC and seconds (`bertkit evaluate MODEL --zero-shot ...`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from small_data import _sst2, _trec, _write  # noqa: E402

DESCRIPTIONS = {
    "sst2": {"positive": "a positive opinion: the film is good and enjoyable",
             "negative": "a negative opinion: the film is bad and boring"},
    "trec": {"ABBR": "what an abbreviation or acronym stands for", "DESC": "a description, definition or reason",
             "ENTY": "a thing, object, animal, substance or other entity", "HUM": "a person or a group of people",
             "LOC": "a location: a place, city or country", "NUM": "a number, date, amount or quantity"},
}


def main() -> None:
    from bertkit.api import evaluate_zero_shot

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--model", default="embedded", help="an embedding run or model (default: the embedded MiniLM)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zero-shot-"))
    for name, (_, test) in (("sst2", _sst2(Path(args.data))), ("trec", _trec(Path(args.data), 0))):
        path = _write(work / f"{name}.csv", test)
        start = time.perf_counter()
        metrics = evaluate_zero_shot(args.model, path, DESCRIPTIONS[name])
        print(json.dumps({"set": name, "rows": len(test), **{k: round(v, 4) for k, v in metrics.items()},
                          "seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    main()
