"""Does transfer help? Five experiments with the embedded MiniLM-L6, each arm over 3 seeds (mean, spread).

    python benchmarks/transfer.py [--data ../shared/data] [--out runs/transfer-bench] [--only e0 e3 ...]

e0  pretrained MiniLM vs the same architecture from random weights (SST-2, 5,000 labelled sentences)
e1  domain-adaptive MLM on the 20,000 bundled SST-2 sentences (unlabelled), then 500 labels, vs 500 labels alone
e1w the same pre-training with the fresh MLM head warmed up first (gradual unfreezing: head alone for 100
    steps, then one more layer every 100 steps, embeddings fixed), then 500 labels
e2  intermediate task MRPC -> RTE vs RTE alone (RTE dev accuracy)
e3  LoRA (r 8, query/value + head) vs full fine-tuning (SST-2 5,000): accuracy, trainable parameters, time,
    peak memory of the training process
e4  a 3-layer student (every other layer of the teacher) distilled from the 6-layer e0 teacher, and the same
    student without distillation: accuracy and inference speed on the SST-2 dev set

Every run is its own child process (peak resident memory from wait4). One JSON line per run is appended to
OUT/runs.jsonl as it finishes; the summary (mean and sample standard deviation per arm) is printed at the end
and written to OUT/summary.json.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEEDS = [1, 2, 3]
COMMON = {"data.max_length": 64, "train.batch_size": 32, "train.lr": 1e-4, "train.warmup_ratio": 0.06,
          "train.log_every": 50, "train.keep_checkpoints": 1}


def _sst2_subsets(work: Path) -> dict[str, Path]:
    """The 5,000- and 500-sentence labelled subsets (seeded) and the 20,000 sentences as unlabelled text."""
    with gzip.open(REPO / "data" / "sst2" / "train_20k.csv.gz", "rt", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    paths = {}
    for name, n in (("sst2_5k", 5000), ("sst2_500", 500)):
        paths[name] = work / f"{name}.csv"
        with open(paths[name], "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["sentence", "label"])
            writer.writeheader()
            writer.writerows({"sentence": rows[i]["sentence"], "label": rows[i]["label"]} for i in order[:n])
    paths["sst2_text"] = work / "sst2_unlabelled.txt"
    paths["sst2_text"].write_text("".join(r["sentence"] + "\n" for r in rows), encoding="utf-8")
    return paths


def _run(kind: str, payload: dict, log: Path, record: dict) -> dict:
    """Run `payload` in a child process; returns its result with wall time and peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", kind, json.dumps(payload)],
                            stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"child failed ({status}): {payload}")
    result = {**record, **json.loads(out.strip().splitlines()[-1]),
              "wall_seconds": round(time.perf_counter() - start, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024)}
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(result) + "\n")
    print(json.dumps(result), flush=True)
    return result


def _child(kind: str, payload: dict) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    if kind == "train":
        from bertkit.api import train
        from bertkit.config import RunConfig
        from bertkit.run_dir import RunDir

        result = train(RunConfig().with_overrides(payload), progress=False)
        init = RunDir(result.run_dir).read_json("lineage.json")["init"]
        print(json.dumps({"dev": {k: round(v, 4) for k, v in result.metrics.items()}, "steps": result.steps,
                          "best_step": result.best_step, "train_seconds": round(result.train_seconds, 1),
                          "parameters": init["parameters"], "trainable": init["trainable"]}))
    elif kind == "speed":
        import torch

        from bertkit.inference.predictor import Predictor

        torch.manual_seed(0)
        predictor = Predictor.from_run(payload["run"])
        with open(payload["data"], encoding="utf-8") as fh:
            texts = [r["sentence"] for r in csv.DictReader(fh)]
        predictor.predict(texts[:64])  # warm-up
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            predictor.predict(texts)
            best = min(best, time.perf_counter() - t0)
        print(json.dumps({"sentences": len(texts), "sentences_per_s": round(len(texts) / best, 1)}))


def _sst2(train: Path, out: Path, seed: int, **extra) -> dict:
    return {**COMMON, "out": str(out), "data.train": str(train), "data.dev": str(REPO / "data" / "sst2" / "dev.csv"),
            "data.text_column": "sentence", "train.epochs": 1, "train.eval_every": 40, "train.seed": seed, **extra}


def experiments(args, work: Path, log: Path) -> list[dict]:
    data = Path(args.data)
    sst = _sst2_subsets(work)
    runs = work / "runs"
    done: list[dict] = []
    for seed in SEEDS:  # full fine-tuning and LoRA interleaved, so machine load hits both alike
        if "e0" in args.only or "e3" in args.only or "e4" in args.only:
            done.append(_run("train", _sst2(sst["sst2_5k"], runs / f"e0-pretrained-{seed}", seed), log,
                             {"exp": "e0", "arm": "pretrained", "seed": seed}))
        if "e3" in args.only:
            done.append(_run("train", _sst2(sst["sst2_5k"], runs / f"e3-lora-{seed}", seed, **{
                "model.lora_r": 8, "train.lr": 1e-3}), log, {"exp": "e3", "arm": "lora r8", "seed": seed}))
    if "e0" in args.only:
        for seed in SEEDS:
            random_init = {"model.init": "random"}
            done.append(_run("train", _sst2(sst["sst2_5k"], runs / f"e0-random-{seed}", seed, **random_init),
                             log, {"exp": "e0", "arm": "random init", "seed": seed}))
    if "e4" in args.only:
        teacher = runs / f"e0-pretrained-{SEEDS[0]}"
        for seed in SEEDS:
            student = {"model.init_from": str(teacher), "model.num_layers": 3}
            done.append(_run("train", _sst2(sst["sst2_5k"], runs / f"e4-distilled-{seed}", seed, **student,
                                            **{"train.distill_from": str(teacher)}), log,
                             {"exp": "e4", "arm": "3-layer distilled", "seed": seed}))
            done.append(_run("train", _sst2(sst["sst2_5k"], runs / f"e4-plain-{seed}", seed, **student), log,
                             {"exp": "e4", "arm": "3-layer, labels only", "seed": seed}))
        dev = REPO / "data" / "sst2" / "dev.csv"
        for rep in range(2):  # interleaved, so machine load hits both alike
            for arm, run in (("teacher 6 layers", teacher), ("student 3 layers", runs / f"e4-distilled-{SEEDS[0]}")):
                done.append(_run("speed", {"run": str(run), "data": str(dev)}, log,
                                 {"exp": "e4-speed", "arm": arm, "seed": rep}))
    if "e1" in args.only:
        dapt = runs / "e1-dapt"
        done.append(_run("train", {**COMMON, "out": str(dapt), "task.name": "mlm", "data.train": str(sst["sst2_text"]),
                                   "data.dev": str(REPO / "data" / "sst2" / "dev.csv"), "data.text_column": "sentence",
                                   "train.epochs": 1, "train.eval_every": 200, "train.seed": 42}, log,
                         {"exp": "e1", "arm": "mlm on sst2 text", "seed": 42}))
        for seed in SEEDS:
            few = {"train.epochs": 6, "train.batch_size": 16, "train.eval_every": 32}
            done.append(_run("train", _sst2(sst["sst2_500"], runs / f"e1-dapt-500-{seed}", seed, **few,
                                            **{"model.init_from": str(dapt)}), log,
                             {"exp": "e1", "arm": "dapt + 500 labels", "seed": seed}))
            done.append(_run("train", _sst2(sst["sst2_500"], runs / f"e1-base-500-{seed}", seed, **few), log,
                             {"exp": "e1", "arm": "500 labels", "seed": seed}))
    if "e1w" in args.only:
        dapt = runs / "e1w-dapt"
        done.append(_run("train", {**COMMON, "out": str(dapt), "task.name": "mlm", "data.train": str(sst["sst2_text"]),
                                   "data.dev": str(REPO / "data" / "sst2" / "dev.csv"), "data.text_column": "sentence",
                                   "train.epochs": 1, "train.eval_every": 200, "train.seed": 42,
                                   "train.unfreeze_every": 100}, log,
                         {"exp": "e1", "arm": "mlm on sst2 text, head warmed up first", "seed": 42}))
        for seed in SEEDS:
            few = {"train.epochs": 6, "train.batch_size": 16, "train.eval_every": 32}
            done.append(_run("train", _sst2(sst["sst2_500"], runs / f"e1w-dapt-500-{seed}", seed, **few,
                                            **{"model.init_from": str(dapt)}), log,
                             {"exp": "e1", "arm": "dapt (head warmed up) + 500 labels", "seed": seed}))
    if "e2" in args.only:
        mrpc = runs / "e2-mrpc"
        done.append(_run("train", {**COMMON, "out": str(mrpc), "data.train": str(data / "mrpc" / "train.tsv"),
                                   "data.dev": str(data / "mrpc" / "dev.tsv"), "data.text_column": "#1 String",
                                   "data.text_pair_column": "#2 String", "data.label_column": "Quality",
                                   "data.max_length": 128, "train.epochs": 2, "train.eval_every": 60,
                                   "train.seed": 42}, log, {"exp": "e2", "arm": "mrpc (intermediate)", "seed": 42}))
        for seed in SEEDS:
            rte = {**COMMON, "data.train": str(data / "rte" / "train.tsv"), "data.dev": str(data / "rte" / "dev.tsv"),
                   "data.text_column": "sentence1", "data.text_pair_column": "sentence2", "data.max_length": 128,
                   "train.epochs": 2, "train.eval_every": 40, "train.seed": seed}
            done.append(_run("train", {**rte, "out": str(runs / f"e2-mrpc-rte-{seed}"), "model.init_from": str(mrpc)},
                             log, {"exp": "e2", "arm": "mrpc -> rte", "seed": seed}))
            done.append(_run("train", {**rte, "out": str(runs / f"e2-rte-{seed}")}, log,
                             {"exp": "e2", "arm": "rte alone", "seed": seed}))
    return done


def summarise(results: list[dict]) -> dict:
    arms: dict[str, list[dict]] = {}
    for r in results:
        arms.setdefault(f"{r['exp']}: {r['arm']}", []).append(r)
    summary = {}
    for name, rs in arms.items():
        row = {"n": len(rs)}
        for key in ("accuracy", "perplexity"):
            values = [r["dev"][key] for r in rs if key in r.get("dev", {})]
            if values:
                row[key] = round(statistics.mean(values), 4)
                row[f"{key}_sd"] = round(statistics.stdev(values), 4) if len(values) > 1 else 0.0
                row[f"{key}_all"] = values
        for key in ("train_seconds", "wall_seconds", "peak_rss_mb", "trainable", "parameters", "sentences_per_s"):
            values = [r[key] for r in rs if key in r]
            if values:
                row[key] = round(statistics.mean(values), 1)
        summary[name] = row
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="the shared data folder")
    parser.add_argument("--out", default=str(REPO / "runs" / "transfer-bench"), help="work folder (runs, logs)")
    parser.add_argument("--only", nargs="+", default=["e0", "e1", "e1w", "e2", "e3", "e4"],
                        choices=["e0", "e1", "e1w", "e2", "e3", "e4"])
    parser.add_argument("--summarise", nargs="+", metavar="RUNS_JSONL",
                        help="only print the summary of earlier runs.jsonl files (later files win per run)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], json.loads(args.child[1]))
        return 0
    if args.summarise:
        latest: dict[tuple, dict] = {}
        for path in args.summarise:
            for line in Path(path).read_text(encoding="utf-8").splitlines():
                r = json.loads(line)
                latest[(r["exp"], r["arm"], r["seed"])] = r
        print(json.dumps(summarise(list(latest.values())), indent=2))
        return 0
    work = Path(args.out)
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"{work} is not empty; pass another --out")
    work.mkdir(parents=True, exist_ok=True)
    results = experiments(args, work, work / "runs.jsonl")
    summary = summarise(results)
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
