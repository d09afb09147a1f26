"""`make bench`'s ceilings and floors (bench/roofline.py): the bytes an update moves are counted per
operator as the module says, the count at a batch of 512 is the linear extension of two small ones,
and each GPU gets its own datasheet line."""

from __future__ import annotations

import pytest
import timm
import torch

from hardsamples.bench import roofline
from hardsamples.runtime import Runtime

CPU = Runtime(torch.device("cpu"), "fp32", torch.contiguous_format)
FLOAT = 4  # bytes


def test_each_operator_reads_its_inputs_and_writes_its_outputs_once():
    with roofline.BytesMoved() as counted:
        a = torch.ones(1000)  # writes 1000 floats
    assert counted.total == 1000 * FLOAT
    steps = [
        (lambda: a.view(10, 100), 0),  # a view streams nothing
        (lambda: a.unsqueeze(0), 0),
        (lambda: a + 1, 2000 * FLOAT),  # reads a, writes a new tensor
        (lambda: a.add_(a * 0), 2000 * FLOAT + 3000 * FLOAT),  # a * 0: read + write; add_: reads a and b, writes a
        (lambda: torch.ones(10).expand(1000, 10) + 1, 10 * FLOAT + (10 + 10000) * FLOAT),  # broadcast: read once
        (lambda: torch.empty(1000), 0),  # allocation writes nothing
    ]
    for work, expected in steps:
        with roofline.BytesMoved() as counted:
            work()
        assert counted.total == expected


def test_an_out_argument_is_written_not_read():
    a, b, out = torch.ones(1000), torch.ones(1000), torch.empty(1000)
    with roofline.BytesMoved() as counted:
        torch.add(a, b, out=out)
    assert counted.total == 3000 * FLOAT


def test_a_fused_list_operator_counts_every_tensor_it_updates():
    params, grads = [torch.ones(100), torch.ones(300)], [torch.ones(100), torch.ones(300)]
    with roofline.BytesMoved() as counted:
        torch._foreach_add_(params, grads)  # reads params and grads, writes params
    assert counted.total == 3 * 400 * FLOAT


def test_the_count_at_a_large_batch_is_the_linear_extension_of_two_small_ones():
    def build():
        return timm.create_model("test_resnet", num_classes=10)

    def sgd(model):
        return torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9, foreach=True)
    extended = roofline.update_bytes(build, sgd, CPU, 16, batch_size=9)
    assert extended == roofline.counted_update_bytes(build, sgd, CPU, 16, 9)
    # and the backward pass and the optimizer's step are in it: more than the forward pass's traffic
    model = build()
    with roofline.BytesMoved() as forward, torch.no_grad():
        model(torch.randn(9, 3, 16, 16))
    assert extended > 2 * forward.total


@pytest.mark.parametrize("name,bf16_tflops,gb_per_s", [
    ("NVIDIA H200", 989.4, 4800.0), ("NVIDIA GH200 480GB", 989.4, None), ("NVIDIA H100 80GB HBM3", 989.4, 3350.0),
    ("NVIDIA H100 PCIe", 756.0, 2000.0), ("NVIDIA A100-SXM4-80GB", 312.0, 2039.0),
    ("NVIDIA A100-SXM4-40GB", 312.0, 1555.0), ("NVIDIA GeForce GTX 1080", None, None)])
def test_each_gpu_gets_its_own_datasheet_line(name, bf16_tflops, gb_per_s):
    assert roofline.datasheet(name) == (bf16_tflops, gb_per_s)


def test_the_peak_follows_the_precision_the_convolutions_run_in():
    cuda = torch.device("cuda")  # a Runtime is a description: no GPU is touched
    assert roofline.precision_of(Runtime(cuda, "bf16", torch.channels_last, True, True)) == "bf16"
    assert roofline.precision_of(Runtime(cuda, "fp32", torch.channels_last, False, True)) == "tf32"  # paper_code
    assert roofline.precision_of(Runtime(cuda, "fp32", torch.channels_last, False, False)) == "fp32"
    assert roofline.precision_of(CPU) == "fp32"
    assert roofline.datasheet_peak(989.4, "bf16") == pytest.approx(989.4e12)
    assert roofline.datasheet_peak(989.4, "tf32") == pytest.approx(494.7e12)
    assert roofline.datasheet_peak(989.4, "fp32") is None and roofline.datasheet_peak(None, "bf16") is None
