"""Device, precision and the CUDA fast paths, decided once from the config.

On CUDA: bf16 autocast, channels_last, cudnn.benchmark, TF32 and the fused SGD step. On the CPU:
float32 and the plain memory layout, so CPU runs are exact and repeatable.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from hardsamples.errors import ConfigError


@dataclass
class Runtime:
    device: torch.device
    precision: str  # bf16 | fp32
    memory_format: torch.memory_format

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def optimizer_kwargs(self) -> dict:
        """The fused SGD step on CUDA: one kernel for all parameters instead of one per tensor."""
        return {"fused": True} if self.device.type == "cuda" else {"foreach": True}


def make_runtime(cfg) -> Runtime:
    device = _pick_device(cfg.device)
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("bf16", "fp32"):
        raise ConfigError(f"precision={precision} is unknown: use auto, bf16 or fp32")
    channels_last = cfg.channels_last
    if channels_last == "auto":
        channels_last = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return Runtime(device, precision, memory_format)


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is visible: use device=cpu or device=auto")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device={name} is not a torch device: use auto, cpu or cuda[:i]") from err
