import pytest
import torch

from bertkit.runtime import Runtime, resolve_precision


def test_precision_resolution(monkeypatch):
    assert resolve_precision("fp32", "cpu") == "fp32"
    monkeypatch.setattr("bertkit.runtime.cpu_has_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr("bertkit.runtime.cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", "cuda") == "fp16"


def test_runtimes_with_different_precisions_in_one_process():
    a = Runtime("bf16", cpu=True)
    lin = torch.nn.Linear(4, 4)
    with a.autocast():
        assert lin(torch.ones(1, 4)).dtype == torch.bfloat16
    b = Runtime("fp32", cpu=True)
    with b.autocast():
        assert lin(torch.ones(1, 4)).dtype == torch.float32
    assert Runtime("fp16", cpu=True).precision == "fp32"  # no fp16 on CPU


@pytest.mark.parametrize("engine", ["FSDP", "DEEPSPEED"])
def test_sharded_engines_are_refused_with_the_way_out(monkeypatch, engine):
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    from bertkit.errors import ConfigError
    from bertkit.runtime import Runtime

    monkeypatch.setattr(Accelerator, "distributed_type", property(lambda self: DistributedType[engine]))
    with pytest.raises(ConfigError, match=f"asks for {engine}.*torchrun"):
        Runtime("fp32")
