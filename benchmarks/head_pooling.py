"""Which token states the classifier of the standard method reads: the first token's (BERT's [CLS] pooler,
what bertkit trains) or their mean (what a sentence-transformers model such as the embedded MiniLM was
trained to give, and what the few-shot recipe classifies on).

    python benchmarks/head_pooling.py {first,mean} OUT [KEY=VALUE ...]

KEY=VALUE are bertkit settings (`data.train=...`, `data.dev=...`, `model.init_from=...`, `train.epochs=1`).
`mean` trains the same run with the few-shot recipe's mean-pooling layer appended to the encoder
(`bertkit.models.pooling`) and the dense layer above it started at the identity and trained, as BERT's pooler
is; everything else is bertkit's standard method. Prints the dev metrics, steps and seconds as one JSON line.
Measured on Chinese reviews from the adapted model (README, "Chinese and other languages"):

    python benchmarks/chinese.py --stages adapt
    for p in first mean; do python benchmarks/head_pooling.py $p /tmp/zh-bench/pool-$p \\
        data.train=../shared/data/zh_sentiment/train.csv.gz data.dev=../shared/data/zh_sentiment/dev.csv \\
        model.init_from=/tmp/zh-bench/adapt train.epochs=1; done
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import bertkit.training.session as session
from bertkit.api import train
from bertkit.config import RunConfig
from bertkit.models import pooling


def use_mean_pooling() -> None:
    """Make the standard method's classifier read the mean of the token states (the appended mean-pooling
    layer), with the dense layer above it trained from the identity."""
    build, append = session._build_training, session.append_mean_pooling

    def build_with_mean(*args, **kwargs):
        return build(*args, **{**kwargs, "mean_pooling": True})

    def append_trainable(model: torch.nn.Module) -> int:
        index = append(model)
        dense = pooling.pre_head_dense(model)
        with torch.no_grad():
            dense.weight.copy_(torch.eye(dense.weight.shape[0]))
        return index

    def freeze_layer_only(model: torch.nn.Module) -> None:
        pooling.freeze_mean_pooling(model)
        for param in pooling.pre_head_dense(model).parameters():
            param.requires_grad_(True)

    session._build_training = build_with_mean
    session.append_mean_pooling = append_trainable
    session.freeze_mean_pooling = freeze_layer_only


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pooling", choices=("first", "mean"))
    p.add_argument("out")
    p.add_argument("settings", nargs="*", metavar="KEY=VALUE")
    a = p.parse_args()
    if a.pooling == "mean":
        use_mean_pooling()
    bad = [s for s in a.settings if "=" not in s]
    if bad:
        p.error(f"settings are KEY=VALUE (e.g. train.epochs=1), got {' '.join(bad)}")
    overrides = dict(s.split("=", 1) for s in a.settings)
    start = time.perf_counter()
    result = train(RunConfig().with_overrides({"out": a.out, "train.method": "standard", **overrides}),
                   progress=False)
    print(json.dumps({"pooling": a.pooling, "dev": result.metrics, "steps": result.steps,
                      "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
