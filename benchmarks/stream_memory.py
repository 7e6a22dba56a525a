"""Peak memory of training as the training file grows: streamed (`--stream`) against read whole.

Builds CSV training files of several sizes from SST-2 sentences (each row tagged with its number, so no
two files share rows), then runs `bertkit train` on each in a child process for a few steps with a fresh
tokenisation cache, sampling the child's memory every 20 ms: peak RSS, and peak anonymous RSS (the memory
the process itself holds; RSS also counts pages of the memory-mapped feature file, which the kernel can
drop at any time because the file backs them). Prints one JSON line per run and a summary table.

    python benchmarks/stream_memory.py --data ../shared/data/sst2 --rows 250000 1000000
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _sentences(data: Path) -> list[tuple[str, str]]:
    """(sentence, label) rows of SST-2's train.tsv(.gz)."""
    train = next(p for p in (data / "train.tsv", data / "train.tsv.gz") if p.exists())
    with (gzip.open(train, "rt", encoding="utf-8", newline="") if train.suffix == ".gz"
          else open(train, encoding="utf-8", newline="")) as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [(r["sentence"], r["label"]) for r in reader]


def _write_file(path: Path, sentences: list[tuple[str, str]], rows: int) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for i in range(rows):
            text, label = sentences[i % len(sentences)]
            writer.writerow([f"{text} ({i})", label])


def _sample(pid: int, peaks: dict[str, int], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            key = line.split(":")[0]
            if key in ("VmRSS", "RssAnon"):
                peaks[key] = max(peaks.get(key, 0), int(line.split()[1]) * 1024)
        time.sleep(0.02)


def _run(train: Path, dev: Path, out: Path, stream: bool, steps: int, cache: Path) -> dict:
    cmd = [sys.executable, "-m", "bertkit", "train", "--train", str(train), "--dev", str(dev), "--out", str(out),
           "--max-steps", str(steps), "--eval-every", str(steps), "--batch-size", "32", "--quiet"]
    if stream:
        cmd.append("--stream")
    env = {**os.environ, "BERTKIT_CACHE": str(cache)}
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks: dict[str, int] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(child.pid, peaks, stop))
    sampler.start()
    _, err = child.communicate()
    stop.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"bertkit train failed:\n{err}")
    return {"seconds": round(time.perf_counter() - start, 1), "peak_rss_mb": round(peaks["VmRSS"] / 2**20),
            "peak_anon_mb": round(peaks["RssAnon"] / 2**20)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/sst2"))
    ap.add_argument("--rows", type=int, nargs="+", default=[250_000, 1_000_000])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--modes", nargs="+", default=["stream", "whole"], choices=["stream", "whole"])
    args = ap.parse_args()
    sentences = _sentences(args.data)
    results = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        dev = tmp / "dev.csv"
        _write_file(dev, sentences[-500:], 500)
        for rows in args.rows:
            train = tmp / f"train-{rows}.csv"
            _write_file(train, sentences, rows)
            for mode in args.modes:
                figures = _run(train, dev, tmp / f"run-{rows}-{mode}", mode == "stream", args.steps,
                               tmp / f"cache-{rows}-{mode}")
                record = {"rows": rows, "file_mb": round(train.stat().st_size / 2**20, 1), "mode": mode, **figures}
                print(json.dumps(record), flush=True)
                results.append(record)
    print("\n| rows | file MB | mode | peak RSS MB | peak anonymous MB | seconds |\n|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['rows']:,} | {r['file_mb']} | {r['mode']} | {r['peak_rss_mb']} | {r['peak_anon_mb']} | "
              f"{r['seconds']} |")


if __name__ == "__main__":
    main()
