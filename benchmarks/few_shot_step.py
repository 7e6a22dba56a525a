"""One contrastive step of the few-shot recipe on the embedded MiniLM, timed two ways each for two choices.

    python benchmarks/few_shot_step.py [--compare sub-batches|pooling] [--rounds 4] [--steps 8]
                                       [--data ../shared/data] [--set sst2|zh_sentiment] [--per-class 128]
                                       [--call-costs N ...]
                                       [--batch 30] [--length 30]

`--compare sub-batches` (the default): real batches of the recipe, 16 pairs each, drawn as a run draws them
(`make_pairs`, seed 0) from `--per-class` training texts per class of SST-2 or, with `--set zh_sentiment`,
the Chinese reviews (sampled as `benchmarks/few_shot.py` samples them, seed 0) and collated by
`objectives.Contrastive`; each step is `Contrastive.forward`, the loss and its backward pass, with the batch's
inputs in one padded call and in sub-batches by length (`bertkit.data.batching.length_chunks`, as the recipe
runs them; `--call-costs` times other values of the recipe's `CALL_COST_TOKENS`). Prints the seconds per
step and the padded tokens per step of each.

`--compare pooling`: `--batch` inputs of `--length` random tokens, the forward pass (hidden states kept) and
the backward pass of the mean of the states below the mean-pooling layer plus the zero-weighted logits, with
that layer run and passed through (`bertkit.models.pooling.below_mean_pooling`, as the recipe trains).

The two ways alternate, `--rounds` times `--steps` steps each (training mode, fp32); the medians are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path


def _pooling(args: argparse.Namespace, model, torch) -> dict:
    from bertkit.models.pooling import below_mean_pooling

    ids = torch.randint(1000, 20000, (args.batch, args.length))
    mask = torch.ones_like(ids)

    def step(passed_through: bool) -> None:
        with below_mean_pooling(model) if passed_through else contextlib.nullcontext():
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        (out.hidden_states[-2].mean() + 0.0 * out.logits.sum()).backward()
        model.zero_grad(set_to_none=True)

    return {"pooling layer run": lambda i: step(False), "pooling layer passed through": lambda i: step(True)}


def _sub_batches(args: argparse.Namespace, model, torch) -> dict:
    import bertkit.training.few_shot as few_shot
    import bertkit.training.objectives.contrastive as contrastive_module
    from bertkit.config import DataConfig, TaskConfig
    from bertkit.data.batching import length_chunks
    from bertkit.models.loading import embedded_model_dir, load_tokenizer
    from bertkit.tasks.base import get_task
    from bertkit.training.objectives import Contrastive

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from small_data import _sample, _sst2

    if args.set == "sst2":
        pool = _sst2(Path(args.data))[0]
    else:  # zh_sentiment: Chinese reviews, far more varied in length
        import csv
        import gzip

        with gzip.open(Path(args.data) / "zh_sentiment" / "train.csv.gz", "rt", encoding="utf-8") as fh:
            pool = [(r["text"], r["label"]) for r in csv.DictReader(fh)]
    rows = _sample(pool, f"{args.per_class}pc", 0)
    task = get_task(TaskConfig())
    examples = [{"text": t, "label": y, "where": str(i)} for i, (t, y) in enumerate(rows)]
    task.fit(examples)
    features = task.preprocess(examples, load_tokenizer(str(embedded_model_dir())), DataConfig())
    contrastive = Contrastive()
    pairs = few_shot.make_pairs(features, None, seed=0)
    batches = [contrastive.collate(pairs[i:i + 16], 0) for i in range(0, len(pairs) - 15, 16)]
    default_cost = contrastive_module.CALL_COST_TOKENS
    padded: dict[str, list[int]] = {"one padded call": []}

    def step(i: int, call_cost: int, name: str) -> None:
        batch = batches[i % len(batches)]
        contrastive_module.CALL_COST_TOKENS = call_cost
        lengths = batch["attention_mask"].sum(1).tolist()
        chunks = length_chunks(lengths, call_cost)
        padded[name].append(sum(len(c) * max(lengths[j] for j in c) for c in chunks))
        contrastive.loss(contrastive.forward(model, batch), batch).backward()
        model.zero_grad(set_to_none=True)

    print(f"{len(rows)} {args.set} texts, {len(pairs)} pairs, {len(batches)} batches of 16 pairs; real tokens per "
          f"batch: {statistics.mean(int(b['attention_mask'].sum()) for b in batches):.0f}")
    steps = {"one padded call": lambda i: step(i, 10**9, "one padded call")}
    for cost in args.call_costs or [default_cost]:
        name = f"sub-batches by length (call cost {cost} tokens{', the default' if cost == default_cost else ''})"
        padded[name] = []
        steps[name] = lambda i, cost=cost, name=name: step(i, cost, name)
    steps["padded"] = padded
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", choices=("sub-batches", "pooling"), default="sub-batches")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--data", default="../shared/data", help="the folder holding sst2/ and zh_sentiment/")
    ap.add_argument("--set", choices=("sst2", "zh_sentiment"), default="sst2", help="the texts (sub-batches)")
    ap.add_argument("--per-class", type=int, default=128, help="training texts per class (sub-batches)")
    ap.add_argument("--call-costs", type=int, nargs="*", help="sub-batches: the CALL_COST_TOKENS values to time "
                    "(default: the recipe's)")
    ap.add_argument("--batch", type=int, default=30, help="distinct inputs in a batch (pooling)")
    ap.add_argument("--length", type=int, default=30, help="tokens per input (pooling)")
    args = ap.parse_args()

    import torch
    from transformers import BertForSequenceClassification
    from transformers.utils import logging

    from bertkit.models.loading import embedded_model_dir
    from bertkit.models.pooling import append_mean_pooling

    logging.set_verbosity_error()
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(str(embedded_model_dir()), num_labels=2)
    append_mean_pooling(model)
    model.train()
    ways = (_sub_batches if args.compare == "sub-batches" else _pooling)(args, model, torch)
    padded = ways.pop("padded", None)
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for r in range(args.rounds):
        for name, step in ways.items():
            step(0)  # warm-up
            start = time.perf_counter()
            for i in range(args.steps):
                step(r * args.steps + i)
            seconds[name].append((time.perf_counter() - start) / args.steps)
    for name, values in seconds.items():
        tokens = f"; {statistics.mean(padded[name]):.0f} padded tokens per step" if padded else ""
        print(f"{name}: median {statistics.median(values):.3f} s per step ({', '.join(f'{v:.3f}' for v in values)})"
              f"{tokens}")


if __name__ == "__main__":
    main()
