"""The device's ceilings and the floors of one update: what `make bench`'s part 4 divides by.

Ceilings, in the precision the runtime trains in (bf16 under clean's autocast; TF32 under paper_code
on CUDA, whose convolutions run TF32; float32 on a CPU), each from a datasheet and measured here:
  compute: the dense tensor-core peak (DATASHEETS; TF32's is half bf16's on every NVIDIA tensor core
           since Ampere), and the rate of a large matrix product in that precision;
  memory:  the memory bandwidth (DATASHEETS), and the rate of a large device-to-device copy.
Floors of one update (forward, loss, backward and SGD step, as the bench's bare step runs them):
  compute: the update's FLOPs over the measured matrix-product rate;
  memory:  the bytes eager execution moves at least (`update_bytes`: every operator reads each
           tensor it is given and writes each it makes once; views move nothing) over the measured
           copy rate. Kernels move more (a training BatchNorm reads its input twice, a convolution
           re-reads tiles), so time / floor > 1 says how far they are from streaming at full
           bandwidth. Tensors smaller than the GPU's L2 cache (the deep layers' at batch 512) may
           skip memory altogether, so the floor is one for the large early layers, which dominate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from hardsamples.runtime import Runtime

# (a fragment of torch.cuda.get_device_name, dense bf16 tensor-core TFLOP/s, memory bandwidth in GB/s
# or None where the part comes in several memories); vendors' datasheets, the first match wins.
DATASHEETS = [("GH200", 989.4, None), ("H100 PCIe", 756.0, 2000.0), ("H100 NVL", 835.0, 3900.0),
              ("H100", 989.4, 3350.0), ("H200", 989.4, 4800.0), ("A100-SXM4-80GB", 312.0, 2039.0),
              ("A100 80GB PCIe", 312.0, 1935.0), ("A100", 312.0, 1555.0), ("L40S", 362.0, 864.0),
              ("L4", 121.0, 300.0), ("A10", 125.0, 600.0)]
# Operators that allocate without writing: the memory they return is not traffic.
ALLOCATIONS = {torch.ops.aten.empty.memory_format, torch.ops.aten.empty_like.default,
               torch.ops.aten.empty_strided.default, torch.ops.aten.new_empty.default,
               torch.ops.aten.new_empty_strided.default}


def precision_of(runtime: Runtime) -> str:
    """bf16, tf32 or fp32: the arithmetic the runtime's convolutions run in."""
    if runtime.precision == "bf16":
        return "bf16"
    return "tf32" if runtime.device.type == "cuda" and runtime.cudnn_allow_tf32 else "fp32"


def datasheet(device_name: str) -> tuple[float | None, float | None]:
    """(dense bf16 TFLOP/s, memory GB/s) of a GPU in DATASHEETS, or (None, None)."""
    for fragment, tflops, bandwidth in DATASHEETS:
        if fragment in device_name:
            return tflops, bandwidth
    return None, None


def datasheet_peak(bf16_tflops: float | None, precision: str) -> float | None:
    """FLOP/s of the tensor cores in a precision, from their dense bf16 peak; None for plain float32,
    which no tensor core runs."""
    if bf16_tflops is None or precision == "fp32":
        return None
    return bf16_tflops * 1e12 / (2 if precision == "tf32" else 1)


@contextlib.contextmanager
def tf32_matmuls(enabled: bool):
    """TF32 matrix products for a while: paper_code leaves them off (its TF32 is cuDNN's), but its
    ceiling is the TF32 rate its convolutions run at."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled or before
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def gemm_work(runtime: Runtime) -> tuple[Callable[[], int], float]:
    """A square matrix product in the runtime's precision, and the FLOPs of one call: the rate the
    convolutions chase (n = 8192 on CUDA, 1024 on a CPU)."""
    precision = precision_of(runtime)
    n = 8192 if runtime.device.type == "cuda" else 1024
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(n, n, device=runtime.device, dtype=dtype)
    b = torch.randn(n, n, device=runtime.device, dtype=dtype)

    def product() -> int:
        with tf32_matmuls(precision == "tf32"):
            torch.mm(a, b)
        return 1
    return product, 2.0 * n**3


def copy_work(device: torch.device) -> tuple[Callable[[], int], float]:
    """A device-to-device copy far larger than any cache, and the bytes one call moves (read + write):
    1 GiB on CUDA, 256 MiB on a CPU."""
    elements = (2**30 if device.type == "cuda" else 2**28) // 4
    source = torch.ones(elements, device=device)
    target = torch.empty_like(source)

    def copy() -> int:
        target.copy_(source)
        return 1
    return copy, 2.0 * source.numel() * source.element_size()


class BytesMoved(TorchDispatchMode):
    """Counts the bytes every operator reads and writes once, below autograd and autocast (so the
    backward pass and the casts are counted, each in the dtype it runs in)."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func not in ALLOCATIONS:
            self.total += self.traffic(func, args, kwargs or {}, out)
        return out

    @staticmethod
    def traffic(func, args, kwargs, out) -> int:
        written, write_only = written_arguments(func, args, kwargs)
        inputs = [t for t in unique_tensors(tree_flatten((args, kwargs))[0]) if not any(t is w for w in write_only)]
        given = {t.untyped_storage().data_ptr() for t in inputs + written}
        made = [t for t in unique_tensors(tree_flatten(out)[0]) if t.untyped_storage().data_ptr() not in given]
        if not made and not written:  # a view or a read of metadata: nothing streams
            return 0
        return sum(map(tensor_bytes, inputs + made + written))


def written_arguments(func, args, kwargs) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The tensors an operator's schema says it writes into (Tensor(a!)): all of them (in place, a
    fused optimizer's lists, out=), and those only written (out=, a keyword-only argument)."""
    written, write_only = [], []
    for i, argument in enumerate(func._schema.arguments):
        if argument.alias_info is not None and argument.alias_info.is_write:
            positional = i < len(args) and not argument.kwarg_only
            value = args[i] if positional else kwargs.get(argument.name)
            written.append(value)
            if argument.kwarg_only:
                write_only.append(value)
    return unique_tensors(tree_flatten(written)[0]), unique_tensors(tree_flatten(write_only)[0])


def unique_tensors(values) -> list[torch.Tensor]:
    seen, tensors = set(), []
    for v in values:
        if isinstance(v, torch.Tensor) and id(v) not in seen:
            seen.add(id(v))
            tensors.append(v)
    return tensors


def tensor_bytes(t: torch.Tensor) -> int:
    """The bytes an operator streams for a tensor: its elements, but no more than its storage holds
    (a broadcast bias is read once, not once per sample)."""
    return min(t.numel() * t.element_size(), t.untyped_storage().nbytes())


def update_bytes(build: Callable[[], torch.nn.Module], optimizer_for: Callable[[torch.nn.Module], torch.optim.Optimizer],
                 runtime: Runtime, image_size: int, batch_size: int) -> float:
    """Bytes one update moves at least (see the module's docstring) at batch_size: counted at batches
    of 2 and 4 and extended linearly (weights, gradients and optimizer state do not grow with the
    batch; activations grow in proportion), so a batch of 512 is never run to be counted."""
    two, four = (counted_update_bytes(build, optimizer_for, runtime, image_size, batch) for batch in (2, 4))
    return two + (four - two) / 2 * (batch_size - 2)


def counted_update_bytes(build: Callable[[], torch.nn.Module],
                         optimizer_for: Callable[[torch.nn.Module], torch.optim.Optimizer], runtime: Runtime,
                         image_size: int, batch_size: int) -> int:
    """The bytes of one update counted by BytesMoved, on the runtime's device, in its precision and
    layout, with the run's optimizer (the second step: the first makes SGD's momentum buffers)."""
    torch.manual_seed(0)
    model = build().to(runtime.device, memory_format=runtime.memory_format)
    optimizer = optimizer_for(model)
    x = torch.randn(batch_size, 3, image_size, image_size, device=runtime.device).contiguous(
        memory_format=runtime.memory_format)
    y = torch.arange(batch_size, device=runtime.device) % 2

    def step() -> None:
        with runtime.autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    step()
    with BytesMoved() as mode:
        step()
    return mode.total
