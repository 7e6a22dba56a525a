"""Transfer as model-building options: head reuse by label name, students, freezing, layer-wise LR."""

import pytest
import torch

from bertkit.config import TaskConfig, TrainConfig
from bertkit.models import transfer
from bertkit.models.heads import head_state_of
from bertkit.models.loading import build_model, load_tokenizer
from bertkit.tasks import get_task
from bertkit.training.optim import build_optimizer


def _cls(labels, problem="single_label"):
    task = get_task(TaskConfig())
    task.labels, task.problem = list(labels), problem
    return task


def _logits(model, tokenizer, text="the movie was good"):
    model.eval()
    with torch.no_grad():
        return model(**tokenizer([text], return_tensors="pt")).logits[0]


@pytest.fixture
def saved_head(tiny_model_dir, tmp_path):
    """A classifier whose labels are in the order ["pos", "neg"] (as another tool might save them)."""
    torch.manual_seed(3)
    model, _ = build_model(str(tiny_model_dir), _cls(["pos", "neg"]))
    torch.nn.init.normal_(model.classifier.weight, std=1.0)  # a head with clearly distinct rows
    model.save_pretrained(tmp_path / "saved")
    load_tokenizer(str(tiny_model_dir)).save_pretrained(tmp_path / "saved")
    return tmp_path / "saved", model


def test_head_of_the_same_labels_is_kept_and_reordered_by_name(saved_head, tiny_model_dir):
    path, original = saved_head
    assert head_state_of(str(path)) == {"task": "classification", "problem": "single_label", "labels": ["pos", "neg"]}
    model, report = build_model(str(path), _cls(["neg", "pos"]))
    tokenizer = load_tokenizer(str(tiny_model_dir))
    before, after = _logits(original, tokenizer), _logits(model, tokenizer)
    assert report["head"] == "kept, outputs re-ordered by label name"
    assert torch.allclose(after, before[[1, 0]], atol=1e-5)  # "neg" is now output 0, with the same score


def test_head_of_other_labels_or_problem_is_new_even_at_the_same_size(saved_head):
    path, original = saved_head
    for task in (_cls(["bad", "good"]), _cls(["neg", "pos"], problem="multi_label")):
        model, report = build_model(str(path), task)
        assert report["head"].startswith("new (it was trained for classification")
        assert not torch.allclose(model.classifier.weight, original.classifier.weight)


def test_head_state_mismatch_across_tasks(saved_head):
    path, _ = saved_head
    ner = get_task(TaskConfig(name="ner"))
    ner.labels = ["O", "B-PER", "I-PER"]
    model, report = build_model(str(path), ner)
    assert report["head"].startswith("new") and model.classifier.out_features == 3


def test_student_keeps_evenly_spaced_layers(tiny_model_dir):
    teacher, _ = build_model(str(tiny_model_dir), _cls(["neg", "pos"]))
    student, report = build_model(str(tiny_model_dir), _cls(["neg", "pos"]), num_layers=1)
    assert report["layers_kept"] == [0] and student.config.num_hidden_layers == 1
    assert len(student.bert.encoder.layer) == 1
    kept, original = student.bert.encoder.layer[0], teacher.bert.encoder.layer[0]
    assert torch.equal(kept.output.dense.weight, original.output.dense.weight)
    with pytest.raises(Exception, match="only 2 layers"):
        build_model(str(tiny_model_dir), _cls(["neg", "pos"]), num_layers=3)


def test_keep_layers_takes_every_other_layer_of_six():
    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig(hidden_size=16, num_hidden_layers=6, num_attention_heads=2,
                                                     intermediate_size=16, vocab_size=50))
    marks = [layer.output.dense.weight.clone() for layer in model.bert.encoder.layer]
    assert transfer.keep_layers(model, 3) == [0, 2, 4]
    assert all(torch.equal(model.bert.encoder.layer[i].output.dense.weight, marks[j]) for i, j in enumerate([0, 2, 4]))
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 2)


def test_masked_lm_keeps_the_encoder_pooler(tiny_model_dir):
    from safetensors.torch import load_file

    mlm = get_task(TaskConfig(name="mlm"))
    model, report = build_model(str(tiny_model_dir), mlm)
    saved = load_file(str(tiny_model_dir / "model.safetensors"))
    assert report["head"].endswith("pooler kept")
    assert torch.equal(model.bert.pooler.dense.weight, saved["pooler.dense.weight"])


def test_layer_depths_and_layerwise_learning_rates(tiny_model_dir):
    model, _ = build_model(str(tiny_model_dir), _cls(["neg", "pos"]))
    depths = {n: transfer.layer_depth(n, 2, "bert") for n, _ in model.named_parameters()}
    assert depths["bert.embeddings.word_embeddings.weight"] == 0
    assert depths["bert.encoder.layer.0.attention.self.query.weight"] == 1
    assert depths["bert.encoder.layer.1.output.dense.bias"] == 2
    assert depths["classifier.weight"] == 3 and depths["bert.pooler.dense.weight"] == 3
    opt = build_optimizer(model, TrainConfig(lr=1e-3, layer_lr_decay=0.5), depths, 2)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert lr_of[id(params["classifier.weight"])] == pytest.approx(1e-3)
    assert lr_of[id(params["bert.encoder.layer.1.output.dense.weight"])] == pytest.approx(5e-4)
    assert lr_of[id(params["bert.encoder.layer.0.output.dense.weight"])] == pytest.approx(2.5e-4)
    assert lr_of[id(params["bert.embeddings.word_embeddings.weight"])] == pytest.approx(1.25e-4)


def test_gradual_unfreezing_schedule(tiny_model_dir):
    model, _ = build_model(str(tiny_model_dir), _cls(["neg", "pos"]))
    named = list(model.named_parameters())
    depths = [transfer.layer_depth(n, 2, "bert") for n, _ in named]

    def trainable_depths(step):
        transfer.set_trainable(named, depths, 2, step=step, unfreeze_every=10, frozen_below=0)
        return sorted({d for (_, p), d in zip(named, depths) if p.requires_grad})

    assert trainable_depths(0) == [3]  # the head (and pooler) only
    assert trainable_depths(10) == [2, 3]
    assert trainable_depths(29) == [1, 2, 3]
    assert trainable_depths(30) == [0, 1, 2, 3]  # the embeddings last
