"""Device, precision and the CUDA fast paths, decided once from the config.

On CUDA: the protocol's precision (paper_code: float32 as the authors; clean: bf16 autocast), its TF32
settings, channels_last, cudnn.benchmark and the fused SGD step. On the CPU: float32 and the plain
memory layout, so CPU runs are exact and repeatable.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from hardsamples.errors import ConfigError


@dataclass
class Runtime:
    device: torch.device
    precision: str  # bf16 | fp32
    memory_format: torch.memory_format
    # As set in torch.backends for this run (recorded in run.json); None on the CPU, where TF32 does not exist.
    matmul_allow_tf32: bool | None = None
    cudnn_allow_tf32: bool | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def optimizer_kwargs(self) -> dict:
        """The fused SGD step on CUDA: one kernel for all parameters instead of one per tensor."""
        return {"fused": True} if self.device.type == "cuda" else {"foreach": True}


def threads_from_allocation() -> None:
    """Under SLURM, torch's CPU threads follow the job's allocation (SLURM_CPUS_PER_TASK) instead of
    every core of the node, unless OMP_NUM_THREADS says otherwise."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if cpus.isdigit() and int(cpus) > 0 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(int(cpus))


def make_runtime(cfg) -> Runtime:
    device = _pick_device(cfg.device)
    fidelity = cfg.get("fidelity") or {}
    precision = resolve_precision(cfg.precision, fidelity.get("precision", "auto"), device.type)
    channels_last = cfg.channels_last
    if channels_last == "auto":
        channels_last = device.type == "cuda"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    runtime = Runtime(device, precision, memory_format)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        # Set on every CUDA run, so one process running both protocols never inherits the other's.
        torch.backends.cuda.matmul.allow_tf32 = runtime.matmul_allow_tf32 = bool(fidelity.get("matmul_tf32", True))
        torch.backends.cudnn.allow_tf32 = runtime.cudnn_allow_tf32 = bool(fidelity.get("cudnn_tf32", True))
    return runtime


def resolve_precision(requested: str, protocol_precision: str, device_type: str) -> str:
    """bf16 or fp32: `precision` unless auto, then the protocol's (fidelity.precision), whose auto
    means bf16 autocast on CUDA and float32 elsewhere. The CPU always runs float32. Both are among
    config_checks.settings.PRECISIONS (checked with the config)."""
    if device_type != "cuda":
        return "fp32"
    choice = requested if requested != "auto" else protocol_precision
    return "bf16" if choice == "auto" else choice


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is visible: use device=cpu or device=auto")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device={name} is not a torch device: use auto, cpu or cuda[:i]") from err
