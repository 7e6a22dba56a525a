"""A task with a head of its own: it names its model class (`Task.model_class`) and loading, training,
saving and prediction take it as it is, with no edit to the model-loading code."""

import json

import pytest
import torch
from transformers import BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from bertkit.config import TASK_CONFIGS
from bertkit.tasks import TASKS, register_task
from bertkit.tasks.classification import ClassificationTask
from conftest import tiny_config, write_toy_sentiment


class MeanPoolClassifier(BertPreTrainedModel):
    """Classifies the mean of the last hidden states (no [CLS] pooler)."""

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None, **_):
        hidden = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return SequenceClassifierOutput(logits=self.classifier((hidden * mask).sum(1) / mask.sum(1)))


@pytest.fixture
def mean_pool_task():
    @register_task("mean_pool_classification")
    class MeanPoolTask(ClassificationTask):
        @classmethod
        def model_class(cls):
            return MeanPoolClassifier

    yield MeanPoolTask
    TASKS.pop("mean_pool_classification")
    TASK_CONFIGS.pop("mean_pool_classification")


def test_a_task_with_its_own_head_trains_saves_and_predicts(mean_pool_task, tiny_model_dir, tmp_path):
    from bertkit.api import train
    from bertkit.inference.predictor import Predictor

    train_file, dev_file = write_toy_sentiment(tmp_path)
    cfg = tiny_config(tiny_model_dir, train_file, dev_file, tmp_path / "run",
                      **{"task.name": "mean_pool_classification"})
    result = train(cfg)
    encoder = BertModel.from_pretrained(str(tiny_model_dir))
    predictor = Predictor.from_run(tmp_path / "run", precision="fp32")
    assert type(predictor.model) is MeanPoolClassifier and result.metrics["accuracy"] >= 0.9
    trained = predictor.model.bert.embeddings.word_embeddings.weight
    assert not torch.equal(trained, encoder.embeddings.word_embeddings.weight)  # it trained from the encoder
    (pred,) = predictor.predict(["the film was great"])
    assert pred["label"] == "positive"
    lineage = json.loads((tmp_path / "run" / "lineage.json").read_text())
    assert lineage["init"]["encoder"] == "kept" and lineage["init"]["head"].startswith("new")
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["architectures"] == ["MeanPoolClassifier"]
