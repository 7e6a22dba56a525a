"""The one place that knows about devices, precision and distribution, built on Accelerate.

The loop is plain PyTorch written against `Runtime`: it calls `rt.autocast()`, `rt.backward(loss)`,
`rt.clip(...)` and never branches on the device or on data parallelism itself.
"""

from __future__ import annotations

import contextlib
import logging
import platform
from collections.abc import Iterator
from pathlib import Path

import torch

from bertkit.errors import ConfigError

__all__ = ["Runtime", "resolve_precision", "cpu_has_bf16", "unwrap"]

log = logging.getLogger(__name__)


def unwrap(model: torch.nn.Module, *, adapters: bool = False) -> torch.nn.Module:
    """The model itself, under the wrappers data parallelism (DDP, FSDP, DeepSpeed) and `torch.compile` put
    around it (Accelerate's own unwrapping); with `adapters`, also the base model under a PEFT (LoRA) wrapper.
    Every layer reaches the model through here; a model that is not a torch module (an ONNX Runtime session)
    is returned as it is."""
    if not isinstance(model, torch.nn.Module):
        return model
    from accelerate.utils import extract_model_from_parallel

    net = extract_model_from_parallel(model, keep_torch_compile=False)
    if adapters and hasattr(net, "get_base_model"):
        net = net.get_base_model()
    return net


def cpu_has_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX), so bf16 autocast is a speed-up."""
    if platform.system() != "Linux":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def resolve_precision(requested: str, device_type: str) -> str:
    """`auto` -> bf16 where the hardware supports it, fp16 on older GPUs, fp32 otherwise."""
    if requested != "auto":
        return requested
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device_type == "cpu" and cpu_has_bf16() else "fp32"


# Engines that shard the model or optimiser state across processes (Accelerate's names).
_SHARDED_ENGINES = ("DEEPSPEED", "FSDP", "MEGATRON_LM")


class Runtime:
    """Device, precision and process group of one run (a thin layer over `accelerate.Accelerator`)."""

    def __init__(self, precision: str = "auto", cpu: bool | None = None) -> None:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState, GradientState

        use_cpu = (not torch.cuda.is_available()) if cpu is None else cpu
        self.precision = resolve_precision(precision, "cpu" if use_cpu else "cuda")
        if self.precision == "fp16" and use_cpu:
            log.warning("fp16 is not supported on CPU; using fp32 (set train.precision to bf16 for mixed precision)")
            self.precision = "fp32"
        # Accelerate keeps precision in a process-wide singleton; a new run in the same process (tests,
        # notebooks, pipelines) may choose another precision, so start it afresh.
        AcceleratorState._reset_state()
        GradientState._reset_state()
        mixed = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}[self.precision]
        self.accelerator = Accelerator(mixed_precision=mixed, cpu=use_cpu)
        engine = self.accelerator.distributed_type.value
        if engine in _SHARDED_ENGINES:
            raise ConfigError(
                f"the Accelerate config asks for {engine}, which bertkit does not run yet: its checkpoints, best-model "
                "selection and final model assume every process holds the whole model. Launch plain data "
                "parallelism instead (torchrun, or accelerate launch --multi_gpu), with model.lora_r or a smaller "
                "train.batch_size and a larger train.grad_accum when memory is short"
            )

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def num_processes(self) -> int:
        return self.accelerator.num_processes

    @property
    def process_index(self) -> int:
        return self.accelerator.process_index

    def describe(self) -> dict[str, object]:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else _cpu_name()
        return {"device": str(self.device), "device_name": name or platform.machine(),
                "precision": self.precision, "num_processes": self.num_processes,
                "threads": torch.get_num_threads()}

    def prepare(self, *objects):
        """Move model and optimiser to the device and wrap them for precision and data parallelism."""
        return self.accelerator.prepare(*objects)

    def autocast(self) -> contextlib.AbstractContextManager:
        return self.accelerator.autocast()

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def clip(self, model: torch.nn.Module, max_norm: float) -> float:
        """Clip the global gradient norm; returns the norm before clipping (0.0 when disabled)."""
        if max_norm <= 0:
            return 0.0
        return float(self.accelerator.clip_grad_norm_(model.parameters(), max_norm))

    @contextlib.contextmanager
    def sync_gradients(self, model: torch.nn.Module, sync: bool) -> Iterator[None]:
        """Skip the all-reduce on accumulation micro-batches (`sync=False`)."""
        if sync or self.num_processes == 1:
            yield
        else:
            with self.accelerator.no_sync(model):
                yield

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return unwrap(model)

    def reduce_mean(self, value: float) -> float:
        if self.num_processes == 1:
            return value
        t = torch.tensor([value], device=self.device, dtype=torch.float)
        return float(self.accelerator.reduce(t, reduction="mean").item())

    def wait(self) -> None:
        self.accelerator.wait_for_everyone()
