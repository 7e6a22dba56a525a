"""How long a bertkit process takes to end once its work is done, with and without `gc.freeze()` before the
exit (what `bertkit.cli.entry`, the `bertkit` program, does).

    python benchmarks/exit_time.py [--repeats 3]

Each child process imports torch and transformers, loads the embedded model as a classifier and runs one
forward and backward pass (what every `bertkit` command holds in memory when it ends), prints the time, then
exits; this process reads the time at which the child has gone. Prints the median exit seconds of each way.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

_CHILD = r"""
import gc, sys, time
import torch
from transformers import BertForSequenceClassification
from transformers.utils import logging
from bertkit.models.loading import embedded_model_dir
logging.set_verbosity_error()
model = BertForSequenceClassification.from_pretrained(str(embedded_model_dir()))
model(torch.ones(2, 8, dtype=torch.long)).logits.sum().backward()
if sys.argv[1] == "freeze":
    gc.freeze()
print(time.time(), flush=True)
"""


def exit_seconds(way: str) -> float:
    proc = subprocess.run([sys.executable, "-c", _CHILD, way], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the child process failed (exit status {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return time.time() - float(proc.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    seconds: dict[str, list[float]] = {"plain exit": [], "gc.freeze() first": []}
    for _ in range(args.repeats):  # alternated, so that a busy moment falls on both
        seconds["plain exit"].append(exit_seconds("plain"))
        seconds["gc.freeze() first"].append(exit_seconds("freeze"))
    for way, values in seconds.items():
        print(f"{way}: median {statistics.median(values):.2f} s to exit ({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
