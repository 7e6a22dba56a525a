import socket

import pytest

from bertkit.config import TaskConfig
from bertkit.errors import ModelLoadError
from bertkit.models.loading import build_model, embedded_model_dir, load_tokenizer, resolve_model_name
from bertkit.tasks import get_task


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _task():
    task = get_task(TaskConfig())
    task.labels, task.problem = ["neg", "pos"], "single_label"
    return task


def test_local_directory_loads_without_any_network(tiny_model_dir, no_network, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    model, _ = build_model(str(tiny_model_dir), _task())
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert load_tokenizer(str(tiny_model_dir)).is_fast


def test_embedded_model_is_found():
    path = embedded_model_dir()
    assert (path / "model.safetensors").is_file()
    assert resolve_model_name("embedded") == (str(path), True)


def test_unreachable_hub_id_gives_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        load_tokenizer("no-such-org/no-such-model-xyz")
    message = str(info.value)
    assert "no-such-org/no-such-model-xyz" in message and "model.name" in message and "\n" not in message


def test_missing_local_directory_and_non_model_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="no such model directory"):
        resolve_model_name(str(tmp_path / "missing" / "model"))
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model_name(str(tmp_path))


def test_random_init_differs_from_pretrained(tiny_model_dir):
    import torch

    pre, _ = build_model(str(tiny_model_dir), _task())
    rnd, _ = build_model(str(tiny_model_dir), _task(), init="random")
    w_pre = pre.get_input_embeddings().weight
    w_rnd = rnd.get_input_embeddings().weight
    assert w_pre.shape == w_rnd.shape and not torch.allclose(w_pre, w_rnd)


def test_unreachable_hub_fails_fast_in_one_line_when_not_offline(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def unreachable(*args, **kwargs):
        raise OSError(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(ModelLoadError) as info:
        load_tokenizer("no-such-org/no-such-model-xyz")
    message = str(info.value)
    assert "hub is unreachable" in message and "Name or service not known" in message and "\n" not in message


def test_a_head_of_another_size_is_reinitialised_not_a_crash(tiny_model_dir, tmp_path):
    three = get_task(TaskConfig())
    three.labels, three.problem = ["a", "b", "c"], "single_label"
    build_model(str(tiny_model_dir), three)[0].save_pretrained(tmp_path / "three")
    load_tokenizer(str(tiny_model_dir)).save_pretrained(tmp_path / "three")
    model, report = build_model(str(tmp_path / "three"), _task())  # two labels now
    assert model.classifier.out_features == 2 and model.config.id2label == {0: "neg", 1: "pos"}
    assert report["head"].startswith("new")


def test_pickled_weights_are_refused_unless_allowed(tiny_model_dir, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    weights = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"pickle files only \(pytorch_model.bin\).*model.allow_pickle"):
        build_model(str(folder), _task())
    model, _ = build_model(str(folder), _task(), allow_pickle=True)
    emb = model.get_input_embeddings().weight
    assert torch.equal(emb, weights[next(k for k in weights if k.endswith("word_embeddings.weight"))])


def test_allow_pickle_reaches_the_model_through_the_command_line(tiny_model_dir, tmp_path, toy_files):
    import shutil

    import torch
    from safetensors.torch import load_file

    from bertkit.cli import main

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    argv = ["train", "--train", str(toy_files[0]), "--dev", str(toy_files[1]), "--label-column", "sentiment",
            "--model", str(folder), "--max-steps", "2", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "refused")]) != 0
    assert main([*argv, "--out", str(tmp_path / "allowed"), "--allow-pickle"]) == 0
    assert (tmp_path / "allowed" / "model" / "model.safetensors").is_file()  # saved back as safetensors


def test_a_task_on_the_bare_encoder_claims_no_saved_head(tiny_model_dir, tmp_path, monkeypatch):
    """A task whose model is the bare encoder (`AutoModel`, as an embedding task's is) has no head to
    recognise: a saved classifier is still read as classification's, and a bare encoder as no head at all."""
    from bertkit.models.heads import head_endings, head_state_of
    from bertkit.tasks import base

    class Bare(base.Task):  # only what head recognition reads
        name, auto_model_class = "bare", "AutoModel"

    monkeypatch.setattr(base, "TASKS", {"bare": Bare, **base.TASKS})  # asked first, as a new task may be
    assert head_endings(Bare) == ()
    build_model(str(tiny_model_dir), _task())[0].save_pretrained(tmp_path / "classifier")
    assert head_state_of(str(tmp_path / "classifier")) == {"task": "classification", "labels": ["neg", "pos"],
                                                           "problem": "single_label"}
    assert head_state_of(str(tiny_model_dir)) is None  # the tiny BERT is a bare encoder
