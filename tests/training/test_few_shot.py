"""The few-shot recipe: the mean-pooling layer, SetFit's pairs, the logistic-regression head (against
scikit-learn), the method choice, and a whole few-shot run that plain transformers loads; and the run without
a dev set that small training files get."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bertkit.config import DataConfig, TaskConfig
from bertkit.data.batching import pad_batch
from bertkit.models.loading import build_model, load_tokenizer
from bertkit.models.pooling import MEAN_POOLING_KEY, append_mean_pooling, mean_pooling_unsupported
from bertkit.tasks.base import Task, get_task
from bertkit.training.few_shot import logistic_regression, make_pairs
from bertkit.training.objectives import Contrastive
from conftest import tiny_config, toy_sentiment, write_csv

TEXTS = ["good film", "the plot was very dull and the acting quite weak", "fun", "a lovely warm story",
         "bad", "the movie is superb and the story quite nice"]


def _classifier(model_dir, n_labels=3):
    task = get_task(TaskConfig())
    examples = [{"text": t, "label": str(i % n_labels), "where": str(i)} for i, t in enumerate(TEXTS)]
    task.fit(examples)
    model, _ = build_model(str(model_dir), task, init="pretrained", parent=None)
    return task, model, task.preprocess(examples, load_tokenizer(str(model_dir)), DataConfig())


@pytest.fixture
def family_dirs(tmp_path):
    from families import build_family

    return {name: build_family(name, tmp_path / name) for name in ("bert", "roberta", "electra")}


@pytest.mark.parametrize("family", ["bert", "roberta", "electra"])
def test_the_appended_layer_gives_the_standardised_mean_of_the_token_states(family_dirs, family):
    task, model, features = _classifier(family_dirs[family])
    model.eval()
    batch = task.collate(features, 1 if family != "bert" else 0)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        below = model(**inputs, output_hidden_states=True).hidden_states[-1]
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        mean = (below * mask).sum(1) / mask.sum(1)
        layers = model.config.num_hidden_layers
        index = append_mean_pooling(model)
        assert index == layers and model.config.num_hidden_layers == layers + 1
        top = model(**inputs, output_hidden_states=True).hidden_states[-1]
    expected = torch.nn.functional.layer_norm(mean, mean.shape[-1:])
    # Every position of every input (padding excluded from the mean) holds the standardised mean.
    for row in range(len(features)):
        n = int(inputs["attention_mask"][row].sum())
        torch.testing.assert_close(top[row, :n], expected[row].expand(n, -1), atol=5e-3, rtol=1e-3)
    assert all(not p.requires_grad for p in model.base_model.encoder.layer[-1].parameters())
    assert append_mean_pooling(model) == index  # a model that has the layer keeps it


def test_the_fast_first_token_path_and_plain_transformers_agree_on_the_pooled_classifier(tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    task, model, features = _classifier(tiny_model_dir)
    append_mean_pooling(model)
    model.eval()
    batch = task.collate(features, 0)
    with torch.no_grad():
        fast = task.forward(model, batch)
        stock = Task.forward(task, model, batch)
    torch.testing.assert_close(fast, stock, atol=1e-4, rtol=1e-3)
    model.save_pretrained(tmp_path / "m")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m").eval()
    assert getattr(loaded.config, MEAN_POOLING_KEY) == 2
    with torch.no_grad():
        again = loaded(**{k: v for k, v in batch.items() if k != "labels"}).logits
    torch.testing.assert_close(again, stock, atol=1e-5, rtol=1e-4)


def test_architectures_without_the_bert_layout_are_named():
    from transformers import DebertaV2Config, DistilBertConfig

    assert mean_pooling_unsupported(DebertaV2Config()) and "deberta-v2" in mean_pooling_unsupported(DebertaV2Config())
    assert "distilbert" in mean_pooling_unsupported(DistilBertConfig())


def _features(labels):
    return [{"input_ids": [i], "label": y} for i, y in enumerate(labels)]


def test_pairs_are_setfit_s_oversampled_unique_pairs():
    labels = [0, 0, 0, 1, 1, 2]
    pairs = make_pairs(_features(labels), None, seed=3)
    # 6 examples: 21 unordered pairs with self-pairs, 3 + 6 + 3 + 1 = 10 of them positive, 11 negative;
    # SetFit's count: 11 of each, the positives cycled once past their end.
    same = [p for p in pairs if p["target"] == 1.0]
    other = [p for p in pairs if p["target"] == 0.0]
    assert len(same) == len(other) == 11
    assert all(labels[p["input_ids"][0]] == labels[p["pair_input_ids"][0]] for p in same)
    assert all(labels[p["input_ids"][0]] != labels[p["pair_input_ids"][0]] for p in other)
    unique_same = {tuple(sorted((p["input_ids"][0], p["pair_input_ids"][0]))) for p in same}
    assert len(unique_same) == 10  # every positive pair is used
    assert make_pairs(_features(labels), None, seed=3) == pairs  # a resumed run draws the same pairs
    assert make_pairs(_features(labels), None, seed=4) != pairs
    assert len(make_pairs(_features(labels), 4, seed=3)) == 2 * 2 * len(labels)  # 4 per example, half each
    # 64 examples, two classes: 1,056 positive and 1,024 negative unique pairs, so 1,056 of each
    sixty_four = make_pairs(_features([i % 2 for i in range(64)]), None, seed=3)
    assert sum(p["target"] == 1.0 for p in sixty_four) == sum(p["target"] == 0.0 for p in sixty_four) == 1056
    assert len({tuple(sorted((p["input_ids"][0], p["pair_input_ids"][0]))) for p in sixty_four}) == 1056 + 1024
    # 200 examples of two classes: SetFit's count (10,050 positive unique pairs) is past the cap of two classes;
    # of three, past 5,120; of six, past the 8,000 of every larger set
    assert len(make_pairs(_features([i % 2 for i in range(200)]), None, seed=3)) == 2560
    assert len(make_pairs(_features([i % 3 for i in range(200)]), None, seed=3)) == 5120
    assert len(make_pairs(_features([i % 6 for i in range(300)]), None, seed=3)) == 8000


@pytest.mark.parametrize("family", ["bert", "roberta", "electra"])
def test_a_pair_batch_encodes_each_distinct_input_once_with_the_same_loss_and_gradients(family_dirs, family):
    """Deduplicated, a batch of pairs gives the loss and gradients of encoding all 2B members one by one (dropout
    off); an example paired with itself keeps a second input of its own, for dropout to draw apart."""
    task, model, features = _classifier(family_dirs[family])
    append_mean_pooling(model)
    model.eval()
    pairs = make_pairs(features, None, seed=0)[:24]
    contrastive = Contrastive()
    pad = 0 if family != "roberta" else 1
    batch = contrastive.collate(pairs, pad)
    itself = [i for i, p in enumerate(pairs) if p["input_ids"] == p["pair_input_ids"]]
    distinct = {tuple(ids) for p in pairs for ids in (p["input_ids"], p["pair_input_ids"])}
    assert itself and len(batch["input_ids"]) == len(distinct) + len(itself) < 2 * len(pairs)
    for i in range(len(pairs)):  # each member points at its own tokens; one with itself at a second copy
        for key, member in (("first", "input_ids"), ("second", "pair_input_ids")):
            row = batch["input_ids"][batch[key][i]]
            assert row[: len(pairs[i][member])].tolist() == list(pairs[i][member])
        if i in itself:
            assert batch["first"][i] != batch["second"][i]

    def loss_and_grads(b):
        model.zero_grad()
        loss = contrastive.loss(contrastive.forward(model, b), b)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    deduplicated = loss_and_grads(batch)
    # the old way: the first members, then the second ones, every one an input of its own
    sides = [{"input_ids": p["input_ids"]} for p in pairs] + [{"input_ids": p["pair_input_ids"]} for p in pairs]
    plain = pad_batch(sides, pad, None)
    plain["first"], plain["second"] = torch.arange(len(pairs)), torch.arange(len(pairs), 2 * len(pairs))
    plain["targets"] = batch["targets"]
    every = loss_and_grads(plain)
    torch.testing.assert_close(deduplicated[0], every[0], atol=1e-6, rtol=1e-5)
    assert deduplicated[1].keys() == every[1].keys() and deduplicated[1]
    for name, grad in every[1].items():
        torch.testing.assert_close(deduplicated[1][name], grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("family", ["bert", "roberta", "electra"])
def test_sub_batches_by_length_give_the_embeddings_and_gradients_of_one_call(family_dirs, family, monkeypatch):
    """A batch's inputs run in sub-batches of similar length, each cut to its own longest input: the pooled
    embeddings, loss and gradients are those of the whole padded batch in one call (dropout off)."""
    import bertkit.training.objectives.contrastive as contrastive_module

    task, model, features = _classifier(family_dirs[family])
    append_mean_pooling(model)
    model.eval()
    contrastive = Contrastive()
    batch = contrastive.collate(make_pairs(features, None, seed=0)[:16], 0 if family != "roberta" else 1)
    widths = []
    hook = model.base_model.embeddings.register_forward_hook(lambda _m, _a, out: widths.append(out.shape[:2]))

    def run(call_cost):
        monkeypatch.setattr(contrastive_module, "CALL_COST_TOKENS", call_cost)
        widths.clear()
        model.zero_grad()
        pooled = contrastive.forward(model, batch)
        contrastive.loss(pooled, batch).backward()
        return pooled.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    one_call = run(10**9)
    assert len(widths) == 1
    chunked = run(0)
    lengths = batch["attention_mask"].sum(1)
    assert len(widths) == len(set(lengths.tolist())) > 1  # a call per distinct length, with no padding at all
    assert sum(shape[0] * shape[1] for shape in widths) == int(lengths.sum())
    hook.remove()
    torch.testing.assert_close(chunked[0], one_call[0], atol=1e-5, rtol=1e-5)
    for name, grad in one_call[1].items():
        torch.testing.assert_close(chunked[1][name], grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("family", ["bert", "roberta", "electra"])
def test_the_contrastive_phase_skips_the_pooling_layer_and_takes_the_mean_below_it(family_dirs, family):
    """The pairs' embeddings are the mean of the token states under the mean-pooling layer, as the whole model
    computes them, without running that layer's work; the layer is itself again afterwards. Either call may
    come first (transformers installs its hidden-state hooks on a model's first call)."""
    for first_call in ("contrastive", "whole"):
        task, model, features = _classifier(family_dirs[family])
        append_mean_pooling(model)
        model.eval()
        contrastive = Contrastive()
        batch = contrastive.collate(make_pairs(features, None, seed=0)[:8], 0 if family != "roberta" else 1)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if first_call == "whole":
            with torch.no_grad():
                model(**inputs, output_hidden_states=True)
        pooling = model.base_model.encoder.layer[-1]
        calls = []
        hook = pooling.attention.register_forward_hook(lambda *_, seen=calls: seen.append(1))
        pooled = contrastive.forward(model, batch)
        assert not calls  # the pooling layer's attention did not run
        assert "forward" not in vars(pooling)  # the layer is itself again
        with torch.no_grad():
            whole = model(**inputs, output_hidden_states=True)
        assert calls  # and runs in the whole model
        hook.remove()
        assert len(whole.hidden_states) == model.config.num_hidden_layers + 1
        mask = batch["attention_mask"].unsqueeze(-1).float()
        torch.testing.assert_close(pooled, (whole.hidden_states[-2] * mask).sum(1) / mask.sum(1))


def test_multi_label_pairs_are_positive_when_the_label_sets_meet():
    labels = [[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]]
    sets = [{i for i, v in enumerate(x) if v} for x in labels]
    for p in make_pairs(_features(labels), None, seed=0):
        meet = bool(sets[p["input_ids"][0]] & sets[p["pair_input_ids"][0]])
        assert meet == (p["target"] == 1.0)


def test_the_head_is_scikit_learn_s_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 8))
    y = (z[:, 0] + 0.5 * z[:, 1] + rng.normal(scale=0.5, size=60) > 0).astype(int) + (z[:, 2] > 1).astype(int)
    weight, bias = logistic_regression(z, y, multi_label=False, n_labels=3)
    ours = torch.softmax(torch.from_numpy(z @ weight.T + bias), -1).numpy()
    reference = LogisticRegression(C=1.0, max_iter=5000, tol=1e-10).fit(z, y).predict_proba(z)
    np.testing.assert_allclose(ours, reference, atol=2e-4)
    multi = np.stack([y == 1, z[:, 3] > 0], axis=1).astype(float)
    weight, bias = logistic_regression(z, multi, multi_label=True, n_labels=2)
    for j in range(2):
        ref = LogisticRegression(C=1.0, max_iter=5000, tol=1e-10).fit(z, multi[:, j]).predict_proba(z)[:, 1]
        np.testing.assert_allclose(1 / (1 + np.exp(-(z @ weight[j] + bias[j]))), ref, atol=2e-4)


def test_a_few_shot_run_is_an_ordinary_run(tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertkit.api import train
    from bertkit.inference.predictor import Predictor
    from bertkit.run_dir import RunDir

    rows = toy_sentiment(24, seed=5)
    train_file = write_csv(tmp_path / "train.csv", ["text", "sentiment"], rows)
    cfg = tiny_config(tiny_model_dir, train_file, None, tmp_path / "run", **{
        "train.lr": None, "train.batch_size": None, "train.max_steps": None, "train.eval_every": None,
        "train.method": "auto"})
    result = train(cfg, progress=False)
    run = RunDir(result.run_dir)
    saved = run.load_config().train
    assert (saved.method, saved.lr, saved.batch_size, saved.epochs) == ("few-shot", 2e-5, 16, 1.0)
    assert saved.length_grouping is False  # pairs batched at random
    results = run.read_json("results.json")
    assert results["method"] == "few-shot" and results["dev"] == {}  # 24 examples: no dev split, all train
    assert results["calibration"] == {"skipped": "no dev set"}
    assert run.read_json("environment.json")["data"]["dev"]["rows"] == 0
    # 24 examples (13 and 11): 300 unordered pairs with self-pairs, 157 positive and 143 negative; SetFit's
    # count: 157 of each, 314 pairs in batches of 16
    labels = [y for _, y in rows]
    assert sorted(labels.count(y) for y in set(labels)) == [11, 13]
    assert result.steps == -(-314 // 16)
    config = json.loads((run.model_dir / "config.json").read_text())
    assert config["num_hidden_layers"] == 3 and config[MEAN_POOLING_KEY] == 2
    texts = [t for t, _ in rows[:6]]
    ours = [p["probabilities"] for p in Predictor.from_path(run.path, precision="fp32").predict(texts)]
    model = AutoModelForSequenceClassification.from_pretrained(run.model_dir).eval()
    tok = AutoTokenizer.from_pretrained(run.model_dir)
    with torch.no_grad():
        theirs = torch.softmax(model(**tok(texts, padding=True, return_tensors="pt")).logits, -1)
    labels = model.config.id2label
    for mine, row in zip(ours, theirs):
        assert [mine[labels[i]] for i in range(len(labels))] == pytest.approx(row.tolist(), abs=1e-4)
    assert "had no dev set" in (run.path / "report.html").read_text()
    assert "method | few-shot" in (run.model_dir / "README.md").read_text()


def test_the_head_fits_the_training_examples(tiny_model_dir, tmp_path):
    """On separable toy data the contrastive phase and the head learn the training examples."""
    from bertkit.api import evaluate, train

    rows = toy_sentiment(40, seed=8)
    train_file = write_csv(tmp_path / "train.csv", ["text", "sentiment"], rows)
    cfg = tiny_config(tiny_model_dir, train_file, None, tmp_path / "run", **{
        "train.lr": 1e-3, "train.batch_size": None, "train.max_steps": None, "train.eval_every": None,
        "train.method": "few-shot", "train.few_shot_pairs": 40})  # 1,600 pairs: enough for the random tiny model
    train(cfg, progress=False)
    assert evaluate(tmp_path / "run", train_file)["accuracy"] >= 0.9


def test_small_training_files_keep_every_example_and_larger_ones_split(tiny_model_dir, tmp_path):
    from bertkit.api import train
    from bertkit.run_dir import RunDir

    # 200 examples for the standard method; 500 for the few-shot recipe, whose split would only give a figure
    # (nothing to select) on too few examples to calibrate on.
    for n, method, expect_dev in ((60, "standard", 0), (260, "standard", 26), (260, "auto", 0), (520, "few-shot", 52)):
        folder = tmp_path / f"{n}-{method}"
        folder.mkdir()
        train_file = write_csv(folder / "train.csv", ["text", "sentiment"], toy_sentiment(n, seed=n))
        cfg = tiny_config(tiny_model_dir, train_file, None, folder / "run", **{
            "train.max_steps": 4, "train.eval_every": None, "train.method": method})
        result = train(cfg, progress=False)
        run = RunDir(result.run_dir)
        assert run.read_json("environment.json")["data"]["dev"]["rows"] == expect_dev
        assert bool(result.metrics) == bool(expect_dev)
        assert run.load_config().train.method == ("standard" if method == "standard" else "few-shot")


def test_a_multi_label_few_shot_run_tunes_its_threshold_on_dev(tiny_model_dir, tmp_path):
    import random

    from bertkit.api import train
    from bertkit.run_dir import RunDir

    rng = random.Random(3)
    words = {"pos": ["good", "great", "fine"], "neg": ["bad", "awful", "dull"], "city": ["paris", "london", "rome"]}

    def rows(n):
        out = []
        for _ in range(n):
            labels = rng.sample(sorted(words), rng.randint(1, 2))
            text = " ".join(rng.choice(words[x]) for x in labels) + " the movie"
            out.append((text, "|".join(labels)))
        return out

    train_file = write_csv(tmp_path / "train.csv", ["text", "sentiment"], rows(40))
    dev_file = write_csv(tmp_path / "dev.csv", ["text", "sentiment"], rows(20))
    cfg = tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "run", **{
        "data.label_delimiter": "|", "train.method": "auto", "train.lr": 1e-3, "train.max_steps": 40,
        "train.eval_every": 20})
    result = train(cfg, progress=False)
    run = RunDir(result.run_dir)
    assert run.read_json("results.json")["method"] == "few-shot"
    assert run.read_state()["problem"] == "multi_label" and "threshold" in run.read_json("results.json")["tuned"]
    assert result.best_step in (20, 40) and "f1_micro" in result.metrics
