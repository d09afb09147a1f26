"""The tests that matter on a GPU, on CUDA: skipped without one (`pytest -m cuda` runs every CUDA test).

Elsewhere the tests train on the CPU (conftest.TINY says device=cpu), where a run is bit-for-bit
repeatable and the plain-Python reference of Algorithm 2 matches it exactly. On CUDA, cuDNN chooses
its kernels by timing them (cudnn.benchmark), the loop runs channels_last with the fused SGD step and
the reference neither, so the same float32 arithmetic is summed in other orders. Hence TOLERANCE:

  rel 1e-4 on a loss. One float32 rounding is 6e-8 relative; a kernel that sums the K = C x 3 x 3
  products of a convolution in another order moves its output by up to ~K x 6e-8 (K <= 576 here:
  3.5e-5) and typically ~sqrt(K) x 6e-8 (1.4e-6); 36 SGD steps at lr 0.005 carry such differences on
  without blowing them up (the steps are small against the curvature of this loss). 1e-4 leaves room
  for that, while a wrong choice of batch, a skipped or repeated update or a stale loss stored moves
  the next losses by 1e-2 or more (the batches' losses differ by that much).
  top-1 within two samples: a prediction whose two best logits are within 1e-4 of each other may flip.

TF32 (10-bit mantissas, 5e-4 relative a product) and bf16 (8 bits, 4e-3) are outside that tolerance,
so the comparisons run float32 with TF32 off; the protocols' own runtimes are checked apart (their
run.json fields, both training, no host synchronisation in a round).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY, compose_config, read_metrics, run_cli, train_in_process
from test_fast_path import reference_algorithm2
from test_resume import ARGS as RESUME_ARGS, RUN as RESUME_RUN, kill_after_interval, rows, start

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

CUDA = ["device=cuda"]
FLOAT32 = ["precision=fp32", "fidelity.matmul_tf32=false", "fidelity.cudnn_tf32=false"]  # for the comparisons
LOSS_RTOL = 1e-4


def top1_atol(samples: int) -> float:
    """Two predictions' worth of top-1, in percent."""
    return 2 * 100 / samples


@pytest.mark.parametrize("fidelity,round_order", [("paper_code", "index"), ("clean", "loss")])
def test_on_cuda_the_trace_matches_a_simple_reference_of_algorithm_2(tmp_path, fidelity, round_order):
    overrides = [*CUDA, *FLOAT32, f"fidelity={fidelity}", f"method.round_order={round_order}", "delta=0.5",
                 "epochs=4", "record.trace=true", "record.checkpoint=false"]
    assert train_in_process(tmp_path, overrides) == "finished"
    trace = pd.read_csv(tmp_path / "trace.csv")
    header = json.loads((tmp_path / "run.json").read_text())
    assert header["device"].startswith("cuda") and header["precision"] == "fp32"
    cfg = compose_config(TINY + overrides)
    rounds, chosen, losses = zip(*reference_algorithm2(cfg, torch.device("cuda")))

    assert len(trace) == header["update_budget"] == len(chosen)
    assert trace["batch"].tolist() == list(chosen)  # the same choices, in the same order
    assert trace["round"].tolist() == list(rounds)
    assert trace["loss"].tolist() == pytest.approx(list(losses), rel=LOSS_RTOL)


@pytest.mark.parametrize("fidelity,expected", [("paper_code", ("fp32", False, True)), ("clean", ("bf16", True, True))])
def test_on_cuda_run_json_records_the_protocols_precision_and_tf32(tmp_path, fidelity, expected):
    assert train_in_process(tmp_path, [*CUDA, f"fidelity={fidelity}", "epochs=1"]) == "finished"
    header = json.loads((tmp_path / "run.json").read_text())
    assert (header["precision"], header["matmul_allow_tf32"], header["cudnn_allow_tf32"]) == expected
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == expected[1:]  # as set
    assert header["device"].startswith("cuda")


@pytest.mark.parametrize("fidelity", ["paper_code", "clean"])
def test_on_cuda_both_protocols_train(tmp_path, fidelity):
    """Under each protocol's own runtime (paper_code: float32, TF32 convolutions; clean: bf16 autocast)."""
    assert train_in_process(tmp_path, [*CUDA, f"fidelity={fidelity}", "delta=0.5", "epochs=4"]) == "finished"
    metrics = read_metrics(tmp_path)
    assert np.isfinite(metrics[["train_loss", "test_loss", "seen_train_loss"]].to_numpy()).all()
    assert metrics["train_loss"].iloc[-1] < metrics["train_loss"].iloc[0]  # it learns
    assert metrics["test_top1"].iloc[-1] > 100 / 10 + 10  # well above chance (10 classes)
    batches = pd.read_csv(tmp_path / "batch_accuracy.csv")
    assert set(batches["evaluation"]) == {"interval", "final"}


def close_within_tolerance(a: pd.DataFrame, b: pd.DataFrame, samples: dict[str, int]) -> None:
    """Equal up to TOLERANCE: losses relative, top-1 within two samples, everything else exact."""
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for column in a.columns:
        if column.endswith("loss"):
            assert a[column].tolist() == pytest.approx(b[column].tolist(), rel=LOSS_RTOL), column
        elif column.endswith("top1"):
            split = "test" if column.startswith("test") else "train"
            assert a[column].tolist() == pytest.approx(b[column].tolist(), abs=top1_atol(samples[split])), column
        else:
            assert a[column].tolist() == b[column].tolist(), column


def test_on_cuda_a_killed_run_resumes_to_the_record_of_an_uninterrupted_run(tmp_path):
    """test_resume's kill inside a round, on CUDA: the resumed record equals an uninterrupted run's within
    the tolerance (two processes may pick other cuDNN kernels), the trace's choices exactly."""
    reference = start(tmp_path, "reference", *CUDA, *FLOAT32)
    victim = start(tmp_path, "killed", *CUDA, *FLOAT32)
    killed_dir = tmp_path / "results/runs/killed" / RESUME_RUN
    kill_after_interval(victim, killed_dir, interval=3)
    assert reference.wait(timeout=300) == 0
    saved = torch.load(killed_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert saved["loop"]["pending_ids"] is not None, "killed inside a round"

    result = run_cli([*RESUME_ARGS, *CUDA, *FLOAT32, "sweep_name=killed"], cwd=tmp_path,
                     env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming at update {saved['loop']['updates']} of 54" in result.stdout + result.stderr
    header = json.loads((killed_dir / "run.json").read_text())
    assert header["status"] == "finished" and header["resumed_from"] == [saved["loop"]["updates"]]
    reference_dir = tmp_path / "results/runs/reference" / RESUME_RUN
    samples = {"train": 600 // 64 * 64, "test": 128}  # paper_code: full batches only
    drop = ["seconds", "train_seconds"]
    close_within_tolerance(read_metrics(killed_dir).drop(columns=drop), read_metrics(reference_dir).drop(columns=drop),
                           samples)
    killed_trace, reference_trace = (pd.read_csv(d / "trace.csv") for d in (killed_dir, reference_dir))
    assert killed_trace["batch"].tolist() == reference_trace["batch"].tolist()
    close_within_tolerance(killed_trace, reference_trace, samples)
    assert rows(killed_dir / "metrics.csv") == 6 and rows(killed_dir / "trace.csv") == 54


def test_on_cuda_the_bench_reports_the_datasheet_peak_memory_floor_and_peak_memory(tmp_path):
    from hardsamples.bench import speed

    tiny = ["profile=full", "device=cuda", "models=[test_resnet]", "paper_model=test_resnet", "image_size=32",
            "batch_size=8", "num_batches=5", "repeats=1", "eval_batch_size=16", "authors_native_sizes=[]",
            f"out_dir={tmp_path}"]
    table = speed.run(speed.settings(tiny))
    part4 = table[table["part"] == 4]
    assert set(part4["runtime"]) == {"paper_code", "clean"}  # the full profile times both protocols
    for runtime, rows_ in part4.groupby("runtime"):
        metrics = set(rows_["metric"])
        assert "peak memory allocated during an interval (delta 1.0)" in metrics
        assert rows_.set_index("metric").loc["update in the loop / its memory-bandwidth floor", "value"] > 1
        precision = "tf32" if runtime == "paper_code" else "bf16"
        if speed.roofline.datasheet(speed.device_name(torch.device("cuda")))[0] is not None:
            assert f"model FLOP utilisation, {precision} peak (datasheet)" in metrics


def test_on_cuda_bf16_autocast_moves_fewer_bytes_than_float32():
    """The byte count runs below autocast: clean's bf16 activations are counted at two bytes."""
    import timm

    from hardsamples.bench import roofline
    from hardsamples.runtime import Runtime

    def build():
        return timm.create_model("test_resnet", num_classes=10)

    def sgd(model):
        return torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9, fused=True)
    cuda = torch.device("cuda")
    fp32 = roofline.counted_update_bytes(build, sgd, Runtime(cuda, "fp32", torch.channels_last, False, True), 64, 32)
    bf16 = roofline.counted_update_bytes(build, sgd, Runtime(cuda, "bf16", torch.channels_last, True, True), 64, 32)
    assert 0.4 * fp32 < bf16 < 0.9 * fp32
