"""One contrastive step of the few-shot recipe on the embedded MiniLM, with its mean-pooling layer run (as
before) and passed through (`bertkit.models.pooling.below_mean_pooling`, as the recipe now trains).

    python benchmarks/few_shot_step.py [--rounds 4] [--steps 8] [--batch 30] [--length 30]

Each step is the forward pass (hidden states kept, as the recipe asks for them) and the backward pass of the
mean of the states below the pooling layer plus the zero-weighted logits, on random token ids in training
mode. The two ways alternate, `--rounds` times `--steps` steps each; prints the seconds per step of each
round and their medians.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=30, help="distinct inputs in a batch (16 pairs give up to 32)")
    ap.add_argument("--length", type=int, default=30, help="tokens per input")
    args = ap.parse_args()

    import torch
    from transformers import BertForSequenceClassification
    from transformers.utils import logging

    from bertkit.models.loading import embedded_model_dir
    from bertkit.models.pooling import append_mean_pooling, below_mean_pooling

    logging.set_verbosity_error()
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(str(embedded_model_dir()), num_labels=2)
    append_mean_pooling(model)
    model.train()
    ids = torch.randint(1000, 20000, (args.batch, args.length))
    mask = torch.ones_like(ids)

    def step(passed_through: bool) -> None:
        with below_mean_pooling(model) if passed_through else contextlib.nullcontext():
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        (out.hidden_states[-2].mean() + 0.0 * out.logits.sum()).backward()
        model.zero_grad(set_to_none=True)

    seconds: dict[str, list[float]] = {"pooling layer run": [], "pooling layer passed through": []}
    for _ in range(args.rounds):
        for name, passed in (("pooling layer run", False), ("pooling layer passed through", True)):
            step(passed)  # warm-up
            start = time.perf_counter()
            for _ in range(args.steps):
                step(passed)
            seconds[name].append((time.perf_counter() - start) / args.steps)
    for name, values in seconds.items():
        print(f"{name}: median {statistics.median(values):.3f} s per step ({', '.join(f'{v:.3f}' for v in values)})")


if __name__ == "__main__":
    main()
