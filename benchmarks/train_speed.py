"""Training speed on SST-2: bertkit against the Hugging Face Trainer, same machine, model, data and
hyperparameters, in one run.

    python benchmarks/train_speed.py [--data ../shared/data/sst2] [--phase all|throughput|target]

Systems (the embedded MiniLM-L6; batch 32, lr 5e-5, linear decay after 6 % warm-up, weight decay 0.01,
max length 128, seed 42 for all):
- `trainer-run_glue-defaults`: Trainer as `run_glue.py` runs by default: every input padded to 128, fp32,
  random batches.
- `trainer-tuned`: Trainer with dynamic padding (DataCollatorWithPadding), length-grouped batches and bf16.
- `bertkit`: `bertkit train` with the options of this benchmark's measured table: bf16 where the CPU has it,
  length grouping, last layer for [CLS] only, cheaper CPU dropout, and the word embeddings trained
  (`--no-freeze-embeddings`; fixed is the default now); `bertkit-frozen-emb` keeps them fixed, as
  `bertkit train` does by default; `bertkit-packed` adds
  `--packing`; on request (`--systems`), `bertkit-compiled` adds `--compile` and `bertkit-token-budget`
  `--batch-tokens 512` (which changes the batch size, so it is no like-for-like comparison).

Phase `throughput`: each system trains the same first `--steps` batches, two interleaved rounds, each
system in a child process of its own (clean memory figures); real (non-pad) tokens/s over the steps after
the first five, peak resident memory, and model-FLOPs utilisation (6 x non-embedding parameters per token
against the measured bf16/fp32 matmul ceiling of this machine).
Phase `target`: `trainer-tuned` and bertkit each train one epoch of the full training set, evaluating on
dev every `--eval-every` steps; training seconds (evaluations and checkpoint writes excluded) until dev
accuracy first reaches `--target`. Trainer with run_glue defaults would need over an hour for that epoch:
its time to target is estimated as (steps trainer-tuned needed) x (its seconds per step from the
throughput phase); the same optimiser steps, so the same learning curve up to precision noise.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HYPER = {"lr": 5e-5, "batch_size": 32, "warmup_ratio": 0.06, "weight_decay": 0.01, "max_length": 128, "seed": 42}
SYSTEMS = ["trainer-run_glue-defaults", "trainer-tuned", "bertkit", "bertkit-frozen-emb", "bertkit-packed"]
_TRAINED = {"train.freeze_embeddings": False}
BERTKIT_OPTIONS = {"bertkit": _TRAINED, "bertkit-frozen-emb": {"train.freeze_embeddings": True},
                   "bertkit-packed": {**_TRAINED, "train.packing": True},
                   "bertkit-compiled": {**_TRAINED, "train.compile": True},
                   "bertkit-token-budget": {**_TRAINED, "train.batch_tokens": 512}}


def _rows(path: Path, limit: int | None = None) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return rows[:limit] if limit else rows


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def matmul_ceiling() -> dict[str, float]:
    """GFLOP/s of a large dense matmul with torch here, fp32 and bf16 (best of a few)."""
    import torch

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(4096, 384, dtype=dtype), torch.randn(384, 1536, dtype=dtype)
        for _ in range(3):
            a @ b
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(10):
                a @ b
            best = min(best, (time.perf_counter() - start) / 10)
        out[name] = round(2 * 4096 * 384 * 1536 / best / 1e9, 1)
    return out


# --- bertkit ------------------------------------------------------------------------------------------------
def run_bertkit(args, system: str, phase: str) -> dict:
    from bertkit.api import train_events
    from bertkit.config import RunConfig

    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.tsv"
        rows = _rows(Path(args.data) / "train.tsv.gz", args.steps * HYPER["batch_size"] if phase == "throughput"
                     else None)
        with open(train_file, "w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, ["sentence", "label"], delimiter="\t")
            writer.writeheader()
            writer.writerows(rows)
        overrides = {
            "out": f"{tmp}/run", "data.train": str(train_file), "data.dev": f"{args.data}/dev.tsv",
            "data.text_column": "sentence", "data.max_length": HYPER["max_length"], "train.lr": HYPER["lr"],
            "train.batch_size": HYPER["batch_size"], "train.warmup_ratio": HYPER["warmup_ratio"],
            "train.weight_decay": HYPER["weight_decay"], "train.seed": HYPER["seed"], "train.epochs": 1,
            "train.log_every": 5 if phase == "throughput" else 50,
            "train.eval_every": 10**9 if phase == "throughput" else args.eval_every, **BERTKIT_OPTIONS[system]}
        cfg = RunConfig().with_overrides(overrides)
        curve, paused, reached = [], 0.0, None
        start = last = time.perf_counter()
        windows = []
        for event in train_events(cfg, progress=False):
            now = time.perf_counter()
            if event["kind"] == "train":
                windows.append(event)
            elif event["kind"] == "eval":
                paused += event["eval_seconds"]
                trained = now - start - paused
                acc = event["dev_accuracy"]
                curve.append({"step": event["step"], "train_seconds": round(trained, 1), "accuracy": round(acc, 4)})
                if reached is None and acc >= args.target:
                    reached = curve[-1]
            elif event["kind"] == "save":
                paused += now - last  # the checkpoint written between the previous event and this one
            last = now
    out = {"system": system, "peak_rss_mb": _peak_mb()}
    if phase == "throughput":
        steady = [w for w in windows if w["step"] > 5]
        out["real_tokens_per_s"] = round(sorted(w["tokens_per_s"] for w in steady)[len(steady) // 2])
        out["steps"] = windows[-1]["step"]
    else:
        out.update({"curve": curve, "reached": reached, "final_accuracy": curve[-1]["accuracy"],
                    "epoch_train_seconds": curve[-1]["train_seconds"]})
    return out


# --- Hugging Face Trainer -----------------------------------------------------------------------------------
def run_trainer(args, system: str, phase: str) -> dict:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from bertkit.models.loading import embedded_model_dir, quiet_transformers
    from bertkit.runtime import cpu_has_bf16

    defaults = system == "trainer-run_glue-defaults"
    bf16 = not defaults and cpu_has_bf16()
    model_dir = str(embedded_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = _rows(Path(args.data) / "train.tsv.gz", args.steps * HYPER["batch_size"] if phase == "throughput" else None)
    dev = _rows(Path(args.data) / "dev.tsv")
    padding = "max_length" if defaults else False

    def encode(items):
        enc = tokenizer([r["sentence"] for r in items], truncation=True, max_length=HYPER["max_length"],
                        padding=padding)
        return [{**{k: enc[k][i] for k in enc}, "labels": int(r["label"])} for i, r in enumerate(items)]

    train_set, dev_set = encode(rows), encode(dev)
    dev_labels = torch.tensor([d["labels"] for d in dev_set])
    collator = DataCollatorWithPadding(tokenizer)
    counted: list[int] = []

    def counting_collator(features):
        batch = collator(features)
        counted.append(int(batch["attention_mask"].sum()))
        return batch

    with quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)

    class Clock(TrainerCallback):
        def __init__(self):
            self.step_ends, self.paused, self.curve, self.reached = [], 0.0, [], None

        def on_train_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_step_end(self, targs, state, control, **k):
            self.step_ends.append(time.perf_counter() - self.paused)
            if phase == "target" and (state.global_step % args.eval_every == 0
                                      or state.global_step == state.max_steps):
                t0 = time.perf_counter()
                acc = self.evaluate()
                self.paused += time.perf_counter() - t0
                trained = time.perf_counter() - self.start - self.paused
                self.curve.append({"step": state.global_step, "train_seconds": round(trained, 1),
                                   "accuracy": round(acc, 4)})
                if self.reached is None and acc >= args.target:
                    self.reached = self.curve[-1]

        @torch.inference_mode()
        def evaluate(self) -> float:
            model.eval()
            preds = []
            for i in range(0, len(dev_set), 64):
                batch = collator([{k: v for k, v in d.items() if k != "labels"} for d in dev_set[i : i + 64]])
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    preds.append(model(**batch).logits.float().argmax(-1))
            model.train()
            return float((torch.cat(preds) == dev_labels).float().mean())

    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=HYPER["batch_size"], learning_rate=HYPER["lr"],
            num_train_epochs=1, warmup_steps=HYPER["warmup_ratio"], weight_decay=HYPER["weight_decay"],
            lr_scheduler_type="linear", bf16=bf16, use_cpu=True,
            train_sampling_strategy="random" if defaults else "group_by_length", eval_strategy="no",
            save_strategy="no", logging_steps=50, report_to="none", seed=HYPER["seed"], disable_tqdm=True)
        trainer = Trainer(model=model, args=targs, train_dataset=train_set, data_collator=counting_collator,
                          callbacks=[clock])
        trainer.train()
    out = {"system": system, "peak_rss_mb": _peak_mb()}
    if phase == "throughput":
        ends = clock.step_ends
        # batch k (0-based) is collated just before step k; steps 6.. over the time from the end of step 5
        out["real_tokens_per_s"] = round(sum(counted[5 : len(ends)]) / (ends[-1] - ends[4]))
        out["seconds_per_step"] = round((ends[-1] - ends[4]) / (len(ends) - 5), 4)
        out["steps"] = len(ends)
    else:
        out.update({"curve": clock.curve, "reached": clock.reached, "final_accuracy": clock.curve[-1]["accuracy"],
                    "epoch_train_seconds": clock.curve[-1]["train_seconds"]})
    return out


def _child(args, system: str, phase: str, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--data", args.data, "--only", system, "--phase", phase, "--steps", str(steps),
           "--eval-every", str(args.eval_every), "--target", str(args.target)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "sst2"))
    parser.add_argument("--phase", choices=["all", "throughput", "target"], default="all")
    parser.add_argument("--steps", type=int, default=80, help="throughput phase: optimiser steps per system")
    parser.add_argument("--defaults-steps", type=int, default=30, help="throughput steps of the pad-128 fp32 run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=150)
    parser.add_argument("--target", type=float, default=0.88)
    parser.add_argument("--target-system", default="bertkit-frozen-emb", choices=list(BERTKIT_OPTIONS))
    parser.add_argument("--systems", nargs="+", default=SYSTEMS, choices=SYSTEMS[:2] + list(BERTKIT_OPTIONS),
                        help="throughput phase: the systems to run (trainer-tuned is the reference)")
    parser.add_argument("--only", choices=SYSTEMS[:2] + list(BERTKIT_OPTIONS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    if args.only:
        fn = run_trainer if args.only.startswith("trainer") else run_bertkit
        print(json.dumps(fn(args, args.only, args.phase)), flush=True)
        return 0

    import torch

    from bertkit.models.loading import embedded_model_dir

    report: dict = {"machine": {"threads": torch.get_num_threads(), "torch": torch.__version__},
                    "hyperparameters": HYPER, "matmul_gflops": matmul_ceiling()}
    from transformers import AutoConfig, AutoModel

    base = AutoModel.from_config(AutoConfig.from_pretrained(str(embedded_model_dir())))
    embedding = sum(p.numel() for n, p in base.named_parameters() if n.startswith("embeddings."))
    flops_per_token = 6 * (sum(p.numel() for p in base.parameters()) - embedding)
    report["model_flops_per_token"] = flops_per_token
    if args.phase in ("all", "throughput"):
        systems = list(dict.fromkeys(["trainer-tuned", *args.systems]))
        runs: dict[str, list[dict]] = {s: [] for s in systems}
        for _ in range(args.rounds):  # interleaved, so machine load hits every system alike
            for system in systems:
                steps = args.defaults_steps if system == "trainer-run_glue-defaults" else args.steps
                runs[system].append(_child(args, system, "throughput", steps))
                print(json.dumps(runs[system][-1]), file=sys.stderr, flush=True)
        table = {}
        for system, results in runs.items():
            best = max(results, key=lambda r: r["real_tokens_per_s"])
            precision = "fp32" if system == "trainer-run_glue-defaults" else "bf16"
            ceiling = report["matmul_gflops"][precision] * 1e9
            table[system] = {"real_tokens_per_s": best["real_tokens_per_s"],
                             "all_rounds": [r["real_tokens_per_s"] for r in results],
                             "peak_rss_mb": max(r["peak_rss_mb"] for r in results), "precision": precision,
                             "mfu": round(best["real_tokens_per_s"] * flops_per_token / ceiling, 3)}
            if "seconds_per_step" in best:
                table[system]["seconds_per_step"] = best["seconds_per_step"]
        tuned = table["trainer-tuned"]["real_tokens_per_s"]
        for row in table.values():
            row["vs_trainer_tuned"] = round(row["real_tokens_per_s"] / tuned, 2)
        report["throughput"] = table
    if args.phase in ("all", "target"):
        target = {}
        for system in ("trainer-tuned", args.target_system):
            target[system] = _child(args, system, "target", 0)
            print(json.dumps(target[system]), file=sys.stderr, flush=True)
        ours, theirs = target[args.target_system]["reached"], target["trainer-tuned"]["reached"]
        summary = {"target_accuracy": args.target, "eval_every": args.eval_every,
                   **{s: {"seconds_to_target": (r["reached"] or {}).get("train_seconds"),
                          "step_reached": (r["reached"] or {}).get("step"), "final_accuracy": r["final_accuracy"],
                          "epoch_train_seconds": r["epoch_train_seconds"]} for s, r in target.items()}}
        if ours and theirs:
            summary["ratio_vs_trainer_tuned"] = round(ours["train_seconds"] / theirs["train_seconds"], 3)
            if "trainer-run_glue-defaults" in report.get("throughput", {}):
                per_step = report["throughput"]["trainer-run_glue-defaults"]["seconds_per_step"]
                estimate = theirs["step"] * per_step
                summary["trainer-run_glue-defaults"] = {"seconds_to_target_estimated": round(estimate, 1)}
                summary["ratio_vs_trainer_defaults"] = round(ours["train_seconds"] / estimate, 3)
        report["time_to_target"] = summary
        report["curves"] = {s: r["curve"] for s, r in target.items()}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
