"""The fast path against the simple one, the loop's freedom from host syncs, and `make bench`.

The project's loop keeps batch ids, losses and the per-round sort on the device and never reads a
Python value inside a round. The reference here is Algorithm 2 written the obvious way: a Python
loop over batches, `.item()` after every update, the sort on the host. Driven with the same model,
data and seed in float32 on the CPU, both must choose the same batches in the same order.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import TINY, compose_config, train_in_process
from hardsamples.bench import speed as bench
from hardsamples.data import load_host_data, make_fixed_batches, to_device
from hardsamples.loop import UpdateLoop, build_loop
from hardsamples.models import build_model
from hardsamples.runtime import make_runtime


@pytest.fixture
def one_thread():
    """One intra-op thread: two stall each other on a shared 2-core machine. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def reference_algorithm2(cfg, device: torch.device = torch.device("cpu")) -> list[tuple[int, int, float]]:
    """(round, batch, loss) of every update: the simple path, from the same seed, data and model, in
    float32 on `device` (plain layout, foreach SGD: none of the loop's fast paths)."""
    torch.manual_seed(cfg.seed)
    host = load_host_data(cfg)
    data = to_device(host, cfg.image_size, cfg.fidelity.normalization, device)
    batches = make_fixed_batches(data.num_train, cfg.batch_size, drop_last=cfg.fidelity.drop_last,
                                 partition=cfg.fidelity.partition, seed=cfg.seed, device=device)
    model = build_model(cfg.model.name, data.num_classes, data.channels).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optimizer.lr, momentum=cfg.optimizer.momentum,
                                weight_decay=cfg.optimizer.weight_decay)
    num_batches, budget = batches.shape[0], batches.shape[0] * cfg.epochs
    paper_code = cfg.fidelity.name == "paper_code"
    # The authors' int(delta * N); clean's floor of the decimal delta x N, at least 1.
    k = int(cfg.delta * num_batches) if paper_code else max(1, math.floor(Fraction(repr(cfg.delta)) * num_batches))
    stored: dict[int, float] = {}
    trace: list[tuple[int, int, float]] = []

    def train(round_index: int, b: int) -> None:
        ids = batches[b]
        x = (data.train_images[ids].float() / 255.0 - data.mean) / data.std
        loss = F.cross_entropy(model(x), data.train_labels[ids])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        stored[b] = loss.item()
        trace.append((round_index, b, stored[b]))

    for b in range(num_batches):
        train(0, b)
    round_index = 0
    ranking = list(range(num_batches))
    while len(trace) < budget:
        round_index += 1
        # Ties: paper_code stably re-sorts last round's ranking (the authors'); clean goes to the lower index.
        if paper_code:
            ranking = sorted(ranking, key=lambda b: -stored[b])
        else:
            ranking = sorted(stored, key=lambda b: (-stored[b], b))
        hardest = ranking[:k]
        for b in sorted(hardest) if cfg.method.round_order == "index" else hardest:
            if len(trace) == budget:
                break
            train(round_index, b)
    return trace


@pytest.mark.parametrize("fidelity,round_order", [("paper_code", "index"), ("clean", "loss")])
def test_trace_matches_a_simple_reference_of_algorithm_2(tmp_path, one_thread, fidelity, round_order):
    overrides = [f"fidelity={fidelity}", f"method.round_order={round_order}", "delta=0.5", "epochs=4",
                 "record.trace=true", "record.checkpoint=false"]
    assert train_in_process(tmp_path, overrides) == "finished"
    trace = pd.read_csv(tmp_path / "trace.csv")
    header = json.loads((tmp_path / "run.json").read_text())
    cfg = compose_config(TINY + overrides)
    rounds, chosen, losses = zip(*reference_algorithm2(cfg))

    assert len(trace) == header["update_budget"] == len(chosen)
    assert trace["batch"].tolist() == list(chosen)
    assert trace["round"].tolist() == list(rounds)
    assert trace["loss"].tolist() == list(losses)  # exact: both store the fused mean, in float32


def tiny_loop(device: torch.device, method: list[str], fidelity: str = "paper_code") -> UpdateLoop:
    """The project's loop, built as train.run builds it (loop.build_loop), on a small model and synthetic
    data, under the protocol's runtime (on CUDA: paper_code float32 with TF32 convolutions, clean bf16)."""
    cfg = compose_config(TINY + method + [f"device={device}", f"fidelity={fidelity}"])
    runtime = make_runtime(cfg)
    torch.manual_seed(0)
    data = to_device(load_host_data(cfg), cfg.image_size, "imagenet", runtime.device, runtime.memory_format)
    return build_loop(cfg, data, runtime)


# Every way a tensor hands a Python value to the host. On CUDA each one waits for the device.
HOST_READS = ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__")
# delta = 0.2 with N = 9: k = 1, so a round (and its choice on the device) before every update.
METHODS = {"hard_batches": ["method=hard_batches", "delta=0.2"],
           "hard_batches_refresh": ["method=hard_batches_refresh", "delta=0.2"],
           "random_batches": ["method=random_batches", "delta=0.2"],
           "trimming": ["method=trimming", "delta=1.0"]}


@pytest.mark.parametrize("method", METHODS)
def test_a_round_reads_no_python_value_from_a_tensor(monkeypatch, one_thread, method):
    """The CPU side of the no-sync rule: inside an interval of rounds, no tensor is turned into a
    Python value by the loop or the policy (C++ conversions are caught by the CUDA test below)."""
    loop = tiny_loop(torch.device("cpu"), METHODS[method])
    loop.train_interval()  # round 0: every batch once

    def refuse(self, *args, **kwargs):
        raise AssertionError("a Python value was read from a tensor inside a round")

    with monkeypatch.context() as patch:
        for name in HOST_READS:
            patch.setattr(torch.Tensor, name, refuse)
        loop.train_interval()
    assert loop.state.updates == 2 * loop.num_batches


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: torch.cuda.set_sync_debug_mode")
@pytest.mark.parametrize("fidelity", ["paper_code", "clean"])
@pytest.mark.parametrize("method", METHODS)
def test_a_round_never_synchronises_with_the_gpu(method, fidelity):
    loop = tiny_loop(torch.device("cuda"), METHODS[method], fidelity)
    loop.train_interval()  # round 0, cuDNN autotuning, allocator warm-up
    loop.train_interval()  # the first sorts
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loop.train_interval()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    assert loop.state.updates == 3 * loop.num_batches


def test_bench_writes_all_five_parts_under_each_runtime_asked_for(tmp_path, one_thread):
    tiny = ["profile=cpu", "device=cpu", "models=[test_resnet]", "paper_model=test_resnet", "image_size=16",
            "batch_size=4", "num_batches=5", "repeats=1", "eval_batch_size=8", "authors_native_sizes=[8]",
            "projection.image_size=32", "projection.batch_size=8", f"out_dir={tmp_path}",
            "runtimes=[paper_code,clean]"]
    table = bench.run(bench.settings(tiny))
    written = list(tmp_path.glob("*.csv"))
    assert len(written) == 1
    csv = pd.read_csv(written[0])
    assert list(csv.columns) == bench.COLUMNS
    assert sorted(csv["part"].unique()) == [1, 2, 3, 4, 5]
    assert len(csv) == len(table)
    assert csv.loc[csv["part"] != 4, "value"].notna().all()
    assert (csv.loc[csv["part"] == 3, "metric"].str.contains("delta 0.2")).any()
    # Parts 1, 2, 4 and 5 once per runtime, the CSV saying which; part 3 under the first one listed.
    for part in (1, 2, 4, 5):
        per_runtime = csv[csv["part"] == part].groupby("runtime")["metric"].apply(list).to_dict()
        assert sorted(per_runtime) == ["clean", "paper_code"] and per_runtime["clean"] == per_runtime["paper_code"]
    assert set(csv.loc[csv["part"] == 3, "runtime"]) == {"paper_code"}
    assert (csv.loc[csv["part"] == 5, "metric"].str.contains("device-hours")).sum() == 2 * 2
    # Part 4 on a CPU: seconds per update, images/s, MFU over a measured matrix product and the update
    # over its memory floor; no datasheet peak and no allocator to ask for peak memory.
    part4 = csv[(csv["part"] == 4) & (csv["runtime"] == "clean")].set_index("metric")["value"]
    assert sorted(part4.index) == sorted([
        "seconds per update in the loop, delta 1.0", "seconds per update in the loop, delta 0.2",
        "training images per second (loop, delta 1.0)", "model FLOP utilisation, measured matrix product",
        "update in the loop / its memory-bandwidth floor"])
    assert part4["training images per second (loop, delta 1.0)"] == pytest.approx(
        4 / part4["seconds per update in the loop, delta 1.0"], rel=1e-4)
    assert 0 < part4["model FLOP utilisation, measured matrix product"] < 100
    assert part4["update in the loop / its memory-bandwidth floor"] > 1  # a floor is never beaten


def test_a_stopped_bench_keeps_every_model_it_finished(tmp_path, one_thread, monkeypatch):
    """The CSV is rewritten after each model, and SIGINT (a time limit's) writes what was measured."""
    measured = []

    def measure_then_stop(bench_, name, checkpoint_dir):
        if measured:  # the second model: the first is on disk already, then the time limit strikes
            on_disk = pd.read_csv(next(tmp_path.glob("*.csv")))
            assert set(on_disk["model"]) == {"test_resnet"}
            raise KeyboardInterrupt
        measured.append(name)
        return measure_model(bench_, name, checkpoint_dir)
    measure_model = bench.measure_model
    monkeypatch.setattr(bench, "measure_model", measure_then_stop)
    tiny = ["profile=cpu", "device=cpu", "models=[test_resnet,resnet18]", "image_size=16", "batch_size=4",
            "num_batches=5", "repeats=1", "eval_batch_size=8", "projection.image_size=32", "projection.batch_size=8",
            f"out_dir={tmp_path}"]
    assert bench.main(tiny) == 130
    kept = pd.read_csv(next(tmp_path.glob("*.csv")))
    assert set(kept["model"]) == {"test_resnet"} and sorted(kept["part"].unique()) == [1, 2, 4, 5]
