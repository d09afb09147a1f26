"""`make bench`: what one update costs, measured in one process, variants interleaved, medians of repeats.

Five parts, one table, printed and written to results/bench/<device>.csv:
  1. per-update time of delta = 0.2 over delta = 1.0, each model (target <= 1.02): choosing hard
     batches is a sort on the device once per round, nothing per update;
  2. an update inside the real loop over a bare forward + backward + optimizer step on a pre-staged
     batch of the same shape and precision (target <= 1.05): what the gather, the normalisation and
     the loop's bookkeeping cost; with compile=true also the loop under torch.compile, and the
     compilation time apart;
  3. the project's loop against the authors' pipeline (bench/authors.py), the paper's Table 1 beside;
  4. what an update costs, each model: seconds per update at delta 1.0 and 0.2 (the paper's Table 1
     beside), images per second, model FLOP utilisation over the datasheet's peak and over a matrix
     product measured here, the update over its memory-bandwidth floor (bench/roofline.py), and on
     CUDA the peak memory allocated;
  5. evaluation and checkpoint time per interval against training time, and the device-hours that
     Tables 3-5 (five models, three datasets, four deltas, three seeds, E = 100) would take.

Every variant runs as a window of whole intervals (or whole evaluations), the windows of one model
one after another in a rotating order, `repeats` times; a ratio is the median of the ratios within
a repeat, so drift in a shared machine's speed cancels. On CUDA a window is wall-clock time and the
host waits for the device only at its edges; on a CPU it is this process's CPU time on one thread,
which other processes sharing the machine do not inflate (a checkpoint, waiting on the disk, is
wall-clock everywhere).

The settings are conf/bench.yaml composed by Hydra (hardsamples.cli), as `make tables` composes
conf/tables.yaml; the loop under test runs the real run config, conf/config.yaml composed with
method=hard_batches and fidelity=<the runtime's protocol> at the profile's sizes. `runtimes` (the full profile's:
[paper_code, clean]; the cpu profile's: [clean]) times parts 1, 2, 4 and 5 of each model under each
protocol's runtime in turn (paper_code: float32 with TF32 convolutions; clean: bf16 autocast; the
same on a CPU, where both are float32), and the CSV's `runtime` column says which; part 3 runs under
the first one listed. The CSV is rewritten after every model, so a bench stopped early keeps what
it measured.
"""

from __future__ import annotations

import functools
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import pandas as pd
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tabulate import tabulate

from hardsamples import cli, record_files, records
from hardsamples.bench import roofline
from hardsamples.bench.authors import AuthorsTraining, authors_loader
from hardsamples.config_checks.bench import check_bench_settings
from hardsamples.data import HostData, make_fixed_batches, make_synthetic, to_device
from hardsamples.errors import ConfigError, first_line
from hardsamples.evaluate import EvalSettings, eval_settings, evaluate
from hardsamples.loop import UpdateLoop, build_loop, build_optimizer
from hardsamples.models import build_model, count_flops
from hardsamples.runtime import Runtime, make_runtime

PROG = "python -m hardsamples.bench"
USAGE = f"""`make bench`: what one update of the training loop costs, against a bare step and against the
authors' pipeline (the paper's Table 1), per model; one table, printed and written to
<out_dir>/<device>.csv. The profile sets the sizes: cpu (minutes on a shared CPU) or full (the
paper's 128 px, batch 512); auto picks full on CUDA, cpu otherwise. Any option below can be set by name.

usage: {PROG} [key=value ...]     (or hardsamples-bench, or make bench ARGS="...")

    {PROG}                                   # profile=auto
    {PROG} profile=full                      # the paper's sizes on any device (slow on a CPU)
    {PROG} models=[resnet18] repeats=9       # one model, more repeats
    {PROG} profile=full --help               # the options as the full profile sets them
"""
COLUMNS = ["device", "profile", "image_size", "batch_size", "runtime", "part", "model", "metric", "value", "unit",
           "target", "detail"]
# Table 1 of the paper: seconds per iteration, ResNet-18 on CIFAR-10 at 128 x 128, batch 512, an A100.
PAPER_SECONDS = {1.0: 0.0310, 0.2: 0.0996}
DELTA = 0.2
NUM_CLASSES = 10


def settings(argv: list[str]) -> DictConfig:
    """conf/bench.yaml composed with the key=value overrides, profile=auto made cpu or full, resolved
    and checked. The profile's sizes are top-level keys reading profiles.<profile> (bench.yaml), so
    an override by name (repeats=9) wins over the profile. Bad input: a one-line ConfigError."""
    s = cli.compose_checked("bench", argv, PROG)
    if s.profile == "auto":
        on_cuda = torch.cuda.is_available() and str(s.device).startswith(("auto", "cuda"))
        s.profile = "full" if on_cuda else "cpu"
    if s.profile not in s.profiles:
        raise ConfigError(f"profile={s.profile} is unknown: use one of auto, {', '.join(s.profiles)}")
    try:
        OmegaConf.resolve(s)
    except OmegaConfBaseException as err:  # an override written as an interpolation that fails
        raise ConfigError(f"{first_line(err)}: {cli.where_options_are('bench', PROG)}") from None
    check_bench_settings(s, DELTA)
    return s


@dataclass
class Ceilings:
    """What the device reaches in one precision (bench/roofline.py): measured, and from a datasheet."""

    precision: str  # bf16 | tf32 | fp32
    gemm: float  # FLOP/s of a large matrix product, measured
    copy: float  # bytes/s of a large device-to-device copy (read + write), measured
    peak: float | None  # dense tensor-core FLOP/s from the datasheet (or peak_tflops); None if unknown
    bandwidth: float | None  # memory bytes/s from the datasheet; None if unknown
    peak_source: str  # datasheet | peak_tflops


@dataclass
class Window:
    """One variant to time: `run` does the work and returns how many units (updates, images) it did."""

    run: Callable[[], int]
    warm_up: Callable[[], int] | None = None  # the first call, timed apart (round 0, compilation, autotuning)
    wall_clock: bool = False  # time waiting too (a checkpoint's fsync), whatever the bench's clock


def interleaved(windows: dict[str, Window], repeats: int, sync: Callable[[], None], clock: Callable[[], float]):
    """Seconds per unit of each window in each repeat, run round-robin with the order rotating.

    Returns (per-unit seconds: name -> one value per repeat, warm-up seconds: name -> seconds). Warm-up
    is wall-clock: compilation runs partly in other processes, and it is time a run waits for.
    """
    def timed(work: Callable[[], int], now: Callable[[], float]) -> tuple[float, int]:
        sync()
        start = now()
        units = work()
        sync()
        return now() - start, units

    warm = {name: timed(window.warm_up or window.run, time.perf_counter)[0] for name, window in windows.items()}
    names = list(windows)
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            seconds, units = timed(windows[name].run, time.perf_counter if windows[name].wall_clock else clock)
            times[name].append(seconds / units)
    return times, warm


def synthetic(num_train: int, native_size: int) -> HostData:
    """conf/dataset/synthetic.yaml's images (RGB, 10 classes) at a given count and native size."""
    return make_synthetic(composed_run_config("dataset=synthetic", f"dataset.num_train={num_train}",
                                              f"dataset.num_test={num_train}", f"dataset.native_size={native_size}",
                                              f"dataset.num_classes={NUM_CLASSES}", "dataset.channels=3").dataset)


def ratio(numerator: list[float], denominator: list[float]) -> tuple[float, float, float]:
    """Median, min and max of the within-repeat ratios."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    return median(ratios), min(ratios), max(ratios)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.3g} us"


class Bench:
    """The data, the runtime and the rows of one `make bench`."""

    def __init__(self, s: DictConfig):
        self.s = s
        self.use_runtime(s.runtimes[0])
        self.cuda = self.runtime.device.type == "cuda"
        # CUDA: wall-clock, the host waiting for the device at each window's edges. CPU: this process's
        # CPU time, which other processes on a shared machine do not inflate (the bench runs on one
        # thread there, the authors' DataLoader in-process), so ratios hold under load.
        self.clock = time.perf_counter if self.cuda else time.process_time
        self.num_samples = s.num_batches * s.batch_size
        self.data = to_device(synthetic(self.num_samples, s.native_size), s.image_size, "imagenet",
                              self.runtime.device, self.runtime.memory_format)
        self.batches = make_fixed_batches(self.num_samples, s.batch_size, drop_last=True, partition="dataset_order",
                                          seed=0, device=self.runtime.device)
        self.device_name = device_name(self.runtime.device)
        self.rows: list[dict] = []
        self._ceilings: dict[str, Ceilings] = {}

    def use_runtime(self, protocol: str) -> None:
        """Time what follows under a protocol's runtime, as a run with fidelity=<protocol> sets it up:
        clean's precision auto (bf16 autocast on CUDA) and TF32 everywhere, paper_code's float32 with
        TF32 in cuDNN only; channels_last on CUDA for both. The TF32 flags are process-wide, so the
        protocols are timed one after the other, never interleaved."""
        self.protocol = protocol
        self.runtime: Runtime = make_runtime(composed_run_config(f"device={self.s.device}", f"fidelity={protocol}"))

    def describe_runtime(self) -> str:
        r = self.runtime
        layout = "channels_last" if r.memory_format == torch.channels_last else "NCHW"
        tf32 = "" if r.cudnn_allow_tf32 is None else f", TF32 matmul/cuDNN {r.matmul_allow_tf32}/{r.cudnn_allow_tf32}"
        return f"runtime {self.protocol}: {r.precision}{tf32}, {layout}"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def ceilings(self) -> Ceilings:
        """This device's ceilings in the precision of the runtime in use, measured once per protocol."""
        if self.protocol not in self._ceilings:
            precision = roofline.precision_of(self.runtime)
            bf16_tflops, bandwidth = roofline.datasheet(self.device_name)
            source = "datasheet"
            if self.s.peak_tflops:
                bf16_tflops, source = float(self.s.peak_tflops), "peak_tflops"
            gemm, gemm_flops = roofline.gemm_work(self.runtime)
            copy, copy_bytes = roofline.copy_work(self.runtime.device)
            times, _ = interleaved({"gemm": Window(gemm), "copy": Window(copy)}, 5, self.sync, self.clock)
            self._ceilings[self.protocol] = Ceilings(
                precision, gemm_flops / median(times["gemm"]), copy_bytes / median(times["copy"]),
                roofline.datasheet_peak(bf16_tflops, precision), None if bandwidth is None else bandwidth * 1e9,
                source)
        return self._ceilings[self.protocol]

    def add(self, part: int, model: str, metric: str, value: float, unit: str, target: str = "", detail: str = ""):
        self.rows.append({"device": self.device_name, "profile": self.s.profile, "image_size": self.s.image_size,
                          "batch_size": self.s.batch_size, "runtime": self.protocol, "part": part, "model": model, "metric": metric,
                          "value": value, "unit": unit, "target": target, "detail": detail})

    def model(self, name: str) -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model(name, NUM_CLASSES, 3).to(self.runtime.device, memory_format=self.runtime.memory_format)

    def loop(self, model, delta: float, data=None) -> UpdateLoop:
        """The project's loop (loop.build_loop) on the real run config, with an update budget that never
        runs out: hard_batches under the protocol of the runtime in use (use_runtime), at the
        profile's batch size, lr and momentum, seed 0."""
        return build_loop(self.run_config(delta), self.data if data is None else data, self.runtime, model=model)

    def run_config(self, delta: float) -> DictConfig:
        s = self.s
        return composed_run_config("method=hard_batches", f"fidelity={self.protocol}", f"delta={delta}",
                                   f"batch_size={s.batch_size}", f"optimizer.lr={s.lr}",
                                   f"optimizer.momentum={s.momentum}", "seed=0", f"epochs={10**9 // s.num_batches}",
                                   "compile=false")

    def optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        """The loop's optimizer (loop.build_optimizer) for a model of one's own."""
        return build_optimizer(self.run_config(1.0), model, self.runtime)

    def interval_window(self, loop: UpdateLoop) -> Window:
        def run() -> int:
            loop.train_interval()
            return loop.num_batches
        return Window(run)

    def eval_settings(self, protocol: str) -> EvalSettings:
        """What a run under conf/fidelity/<protocol>.yaml evaluates with, at the profile's batch sizes."""
        cfg = composed_run_config(f"fidelity={protocol}", f"batch_size={self.s.batch_size}",
                                  f"eval.batch_size={self.s.eval_batch_size}")
        return eval_settings(cfg, self.runtime)


def measure_model(bench: Bench, name: str, checkpoint_dir: Path) -> dict:
    """Parts 1, 2, 4 and 5 of one model: every variant in one interleaved measurement."""
    s, data = bench.s, bench.data
    flops = {size: count_flops(build_model(name, NUM_CLASSES, 3), size) for size in {s.image_size, s.projection.image_size}}
    model = bench.model(name)
    plain, hard = bench.loop(model, 1.0), bench.loop(model, DELTA)
    optimizer = plain.optimizer  # the bare step's and the checkpoint's
    x, y = plain.stage(bench.batches[0])  # staged once: the bare step reads the same batch every time

    def bare_steps(steps: int = s.num_batches) -> int:
        for _ in range(steps):
            with bench.runtime.autocast():
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return steps

    def evaluation(protocol: str) -> Window:
        settings = bench.eval_settings(protocol)

        def run() -> int:
            evaluate(model, data, data.train_images, data.train_labels, settings)
            return bench.num_samples
        return Window(run)

    def checkpoint() -> int:  # wall-clock: writing and fsync wait on the disk
        records.save_checkpoint(checkpoint_dir / "checkpoint.pt",
                                {"model": model.state_dict(), "optimizer": optimizer.state_dict()})
        return 1

    windows = {"bare": Window(bare_steps, warm_up=lambda: bare_steps(1)), "d1.0": bench.interval_window(plain),
               "d0.2": bench.interval_window(hard),
               "eval paper_code": evaluation("paper_code"), "eval clean": evaluation("clean"),
               "checkpoint": Window(checkpoint, wall_clock=True)}
    if s.compile:
        compiled = bench.loop(model, 1.0)
        compiled.forward = torch.compile(model)
        windows["compiled"] = bench.interval_window(compiled)
    times, warm = interleaved(windows, s.repeats, bench.sync, bench.clock)
    update_bytes = roofline.update_bytes(lambda: build_model(name, NUM_CLASSES, 3), bench.optimizer, bench.runtime,
                                         s.image_size, s.batch_size)
    return {"name": name, "times": times, "warm": warm, "flops": flops, "bytes": update_bytes,
            **peak_memory(bench, plain), **loop_work(bench, hard)}


def peak_memory(bench: Bench, loop: UpdateLoop) -> dict:
    """CUDA: the most memory the allocator held during one interval of the loop (the device-resident
    training images and the other variants' state included, as in a run). Nothing on a CPU, which
    keeps no such count."""
    if not bench.cuda:
        return {}
    bench.sync()
    torch.cuda.reset_peak_memory_stats(bench.runtime.device)
    loop.train_interval()
    bench.sync()
    return {"peak_memory": torch.cuda.max_memory_allocated(bench.runtime.device)}


def loop_work(bench: Bench, loop: UpdateLoop, calls: int = 100) -> dict:
    """The loop's own work, timed alone over many calls: the part of an update that parts 1 and 2 can
    only resolve as a ratio of two noisy totals.

    selection: one round's choice (the sort of the stored losses, the k hardest, index order) and the
    store of its k losses; staging: one batch's gather, normalisation and layout (UpdateLoop.stage).
    """
    policy, device = loop.policy, bench.runtime.device

    def select() -> None:
        ids = policy.next_round(1, loop.budget, loop.measure_batch_losses)  # a round after round 0: a choice
        policy.observe(ids, torch.zeros(ids.shape[0], device=device))

    def stage() -> None:
        loop.stage(bench.batches[1])

    seconds = {}
    for name, fn in (("selection", select), ("staging", stage)):
        def block() -> int:
            for _ in range(calls):
                fn()
            return calls
        times, _ = interleaved({name: Window(block)}, 3, bench.sync, bench.clock)
        seconds[name] = median(times[name])
    return {"selection_per_round": seconds["selection"], "staging_per_update": seconds["staging"],
            "k": policy.k}


def report_model(bench: Bench, m: dict) -> None:
    s, t, name = bench.s, m["times"], m["name"]
    d1, d02, bare = median(t["d1.0"]), median(t["d0.2"]), median(t["bare"])
    mid, lo, hi = ratio(t["d0.2"], t["d1.0"])
    selection = m["selection_per_round"] / m["k"]
    bench.add(1, name, "per-update time, delta 0.2 / delta 1.0", mid, "x", "<= 1.02",
              f"{ms(d02)} / {ms(d1)}; repeats {lo:.3f}-{hi:.3f}; alone, the choice of a round of k = {m['k']} "
              f"costs {us(m['selection_per_round'])} = {100 * selection / d1:.2g}% of an update")
    mid, lo, hi = ratio(t["d1.0"], t["bare"])
    bench.add(2, name, "update in the loop / bare step on a staged batch", mid, "x", "<= 1.05",
              f"{ms(d1)} / {ms(bare)}; repeats {lo:.3f}-{hi:.3f}; alone, staging a batch (gather, normalise) "
              f"costs {us(m['staging_per_update'])} = {100 * m['staging_per_update'] / d1:.2g}% of an update")
    if "compiled" in t:
        compiled = median(t["compiled"])
        mid, lo, hi = ratio(t["compiled"], t["d1.0"])
        compile_seconds = m["warm"]["compiled"] - compiled * s.num_batches
        bench.add(2, name, "loop under torch.compile / eager loop", mid, "x", "",
                  f"{ms(compiled)} / {ms(d1)}; compilation {compile_seconds:.1f} s, paid once per run")
    report_throughput(bench, m)
    report_interval_costs(bench, m)


def report_throughput(bench: Bench, m: dict) -> None:
    """Part 4 per model: seconds per update (the paper's Table 1 beside), images per second, FLOP
    utilisation, the update against its memory-bandwidth floor (bench/roofline.py) and peak memory."""
    s, t, name, c = bench.s, m["times"], m["name"], bench.ceilings()
    d1 = median(t["d1.0"])
    for delta in (1.0, DELTA):
        target = "<= 0.012 (GPU, bf16, 128 px, batch 512)" if name == "resnet18" and c.precision == "bf16" else ""
        bench.add(4, name, f"seconds per update in the loop, delta {delta}", median(t[f"d{delta}"]), "s", target,
                  f"{c.precision}, {s.image_size} px, batch {s.batch_size}; the paper's Table 1 (ResNet-18, "
                  f"CIFAR-10 at 128 px, batch 512, an A100): {PAPER_SECONDS[delta]} s")
    images_per_second = s.batch_size / d1
    train_flops = 3 * m["flops"][s.image_size]
    bench.add(4, name, "training images per second (loop, delta 1.0)", images_per_second, "img/s", "",
              f"{train_flops / 1e9:.3g} GFLOP per image (3 x forward) at {s.image_size} px")
    achieved = images_per_second * train_flops
    gemm = f"a {c.precision} matrix product measured here: {c.gemm / 1e12:.3g} TFLOP/s"
    if c.peak:
        bench.add(4, name, f"model FLOP utilisation, {c.precision} peak ({c.peak_source})", 100 * achieved / c.peak,
                  "%", "", f"{achieved / 1e12:.3g} TFLOP/s achieved of {c.peak / 1e12:.4g}; {gemm}")
    bench.add(4, name, "model FLOP utilisation, measured matrix product", 100 * achieved / c.gemm, "%", "",
              f"{achieved / 1e12:.3g} TFLOP/s achieved; {gemm}")
    memory_floor, compute_floor = m["bytes"] / c.copy, train_flops * s.batch_size / c.gemm
    sheet = "" if c.bandwidth is None else f" (datasheet {c.bandwidth / 1e9:.4g} GB/s)"
    bench.add(4, name, "update in the loop / its memory-bandwidth floor", d1 / memory_floor, "x",
              "<= 1.3 (GPU, paper_code)" if bench.protocol == "paper_code" else "",
              f"{ms(d1)} / {ms(memory_floor)}: at least {m['bytes'] / 1e9:.3g} GB moved per update at "
              f"{c.copy / 1e9:.4g} GB/s, a copy measured here{sheet}; compute floor {ms(compute_floor)}")
    if "peak_memory" in m:
        bench.add(4, name, "peak memory allocated during an interval (delta 1.0)", m["peak_memory"] / 2**30, "GiB",
                  "", "the device-resident training images and the bench's other loops included")


def report_interval_costs(bench: Bench, m: dict) -> None:
    """Part 5 per model: an interval of CIFAR-10 (50k train, 10k test) at the profile's batch size."""
    s, t, name = bench.s, m["times"], m["name"]
    n_train, n_test = s.projection.datasets.cifar10
    train_seconds = (n_train // s.batch_size) * median(t["d1.0"])
    for protocol in ("paper_code", "clean"):
        subset = train_subset(protocol, n_train)
        seconds = (subset + n_test) * median(t[f"eval {protocol}"])
        bench.add(5, name, f"evaluation / training time per interval, {protocol}", seconds / train_seconds, "x", "",
                  f"{seconds:.3g} s / {train_seconds:.3g} s on CIFAR-10 ({subset} train + {n_test} test samples)")
    checkpoint = median(t["checkpoint"])
    bench.add(5, name, "checkpoint / training time per interval", checkpoint / train_seconds, "x", "",
              f"{checkpoint:.3g} s / {train_seconds:.3g} s (model + optimizer state, fsync)")


@functools.lru_cache(maxsize=None)
def composed_run_config(*overrides: str) -> DictConfig:
    """A training run's config, conf/config.yaml composed as the training app composes it; read-only,
    since one object serves every call with the same overrides."""
    cfg = cli.compose("config", overrides)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def train_subset(protocol: str, n_train: int) -> int:
    """Training samples evaluated each interval under the protocol's default eval.train_subset."""
    subset = composed_run_config(f"fidelity={protocol}").eval.train_subset
    return n_train if subset is None else min(int(subset), n_train)


def projection(bench: Bench, measured: list[dict]) -> None:
    """Device-hours of Tables 3-5 from the measured per-image speeds.

    A profile smaller than the paper's 128 px is scaled up by each model's FLOP ratio (the batch size
    is not scaled): on a CPU the figure says what this device would take, not what a GPU would.
    """
    s, p = bench.s, bench.s.projection
    runs_per_cell = p.deltas * p.seeds
    scaled = s.image_size != p.image_size
    for protocol in ("paper_code", "clean"):
        hours = {"train": 0.0, "eval": 0.0, "checkpoint": 0.0}
        for m in measured:
            t = m["times"]
            scale = m["flops"][p.image_size] / m["flops"][s.image_size]
            train_image = median(t["d1.0"]) / s.batch_size * scale
            eval_image = median(t[f"eval {protocol}"]) * scale
            for n_train, n_test in p.datasets.values():
                updates = n_train // p.batch_size
                eval_images = train_subset(protocol, n_train) + n_test
                intervals = runs_per_cell * p.epochs
                hours["train"] += intervals * updates * p.batch_size * train_image / 3600
                hours["eval"] += intervals * eval_images * eval_image / 3600
                hours["checkpoint"] += intervals * median(t["checkpoint"]) / 3600
        total = sum(hours.values())
        runs = len(measured) * len(p.datasets) * runs_per_cell
        how = f"scaled from {s.image_size} px by FLOPs" if scaled else f"at {p.image_size} px"
        bench.add(5, "all", f"device-hours for Tables 3-5, {protocol} evaluation", total, "h", "",
                  f"{runs} runs x E={p.epochs}: train {hours['train']:.4g} h, evaluation {hours['eval']:.4g} h, "
                  f"checkpoints {hours['checkpoint']:.3g} h; {how}, on {bench.device_name}")


def compare_with_authors(bench: Bench, native_size: int) -> None:
    """Part 3: per-update time of the project's loop and of the authors' pipeline, interleaved."""
    s, name = bench.s, bench.s.paper_model
    host = synthetic(bench.num_samples, native_size)
    data = to_device(host, s.image_size, "imagenet", bench.runtime.device, bench.runtime.memory_format)
    ours = bench.model(name)
    torch.manual_seed(0)
    theirs = build_model(name, NUM_CLASSES, 3).to(bench.runtime.device)  # float32, default layout
    authors = AuthorsTraining(theirs, authors_loader(host.train_images, host.train_labels, s.image_size, s.batch_size),
                              bench.runtime.device, s.lr, s.momentum)
    windows = {"ours d1.0": bench.interval_window(bench.loop(ours, 1.0, data)),
               "ours d0.2": bench.interval_window(bench.loop(ours, DELTA, data)),
               "authors d1.0": Window(authors.epoch),
               "authors d0.2": Window(lambda: authors.round(DELTA), warm_up=authors.first_epoch)}
    times, _ = interleaved(windows, s.repeats, bench.sync, bench.clock)
    shape = f"{native_size} px images resized to {s.image_size}"
    for delta, target in ((1.0, ">= 3 (GPU)"), (DELTA, ">= 10 (GPU)")):
        mine, theirs_t = median(times[f"ours d{delta}"]), median(times[f"authors d{delta}"])
        mid, lo, hi = ratio(times[f"authors d{delta}"], times[f"ours d{delta}"])
        bench.add(3, name, f"authors' pipeline / ours per update, delta {delta}", mid, "x", target,
                  f"authors {ms(theirs_t)}, ours {ms(mine)} ({shape}); repeats {lo:.2f}-{hi:.2f}; "
                  f"paper (A100, 128 px, batch 512): {ms(PAPER_SECONDS[delta])}")
    own, _, _ = ratio(times["authors d0.2"], times["authors d1.0"])
    bench.add(3, name, "authors' pipeline, delta 0.2 / delta 1.0 per update", own, "x", "",
              f"the paper's Table 1: {PAPER_SECONDS[DELTA] / PAPER_SECONDS[1.0]:.2f}x")


def authors_loader_floor(bench: Bench) -> None:
    """Part 3 at the paper's size whatever the profile: the authors' loader alone, one batch of 512.

    Their loop loads every batch in the main process before it trains it, and at delta < 1 loads all N
    batches to train k: whatever the GPU, an update cannot take less than this CPU time (x N / k).
    """
    p = bench.s.projection
    for dataset, native_size in (("cifar10", 32), ("stl10", 96)):
        n_train = p.datasets[dataset][0]
        host = synthetic(p.batch_size, native_size)
        loader = authors_loader(host.train_images, host.train_labels, p.image_size, p.batch_size)

        def load_all() -> int:
            for _ in loader:
                pass
            return len(loader)
        times, _ = interleaved({"load": Window(load_all)}, 3, bench.sync, bench.clock)
        load = median(times["load"])
        batches = n_train // p.batch_size
        k = int(DELTA * batches)
        bench.add(3, "authors' loader", f"one batch of {p.batch_size} at {p.image_size} px from {native_size} px "
                  f"({dataset}'s shape)", load, "s", "",
                  f"their loop waits this long before each update at delta 1.0, and N/k = {batches}/{k} times as long "
                  f"per update at delta 0.2: {load * batches / k:.3g} s, with this CPU feeding any GPU (the paper, "
                  f"CIFAR-10 on an A100: {PAPER_SECONDS[1.0]} s and {PAPER_SECONDS[DELTA]} s)")


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else records.cpu_name()


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    """`make bench`, `python -m hardsamples.bench` and `hardsamples-bench`: 0, or 2 after one line on
    bad input; --help prints the usage and every option, and runs nothing."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        s = settings(cli.without_help(argv))
        if cli.wants_help(argv):
            print(cli.help_text(USAGE, "bench", s, hidden=("profiles",)))
            print(f"(profile {s.profile}; the profiles' values: profiles.<name>.<key> in conf/bench.yaml)")
            return 0
        run(s)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130  # the shell's code for SIGINT; run() has written what it measured
    return 0


def run(s: DictConfig) -> pd.DataFrame:
    """Every part, measured on checked settings; prints the table, writes the CSV and returns it.

    The CSV is rewritten after each model under each runtime, model by model, so a bench stopped by a
    time limit (SIGINT, then KeyboardInterrupt here) or killed keeps every model it finished."""
    if s.threads:
        torch.set_num_threads(int(s.threads))
    bench = Bench(s)
    out = Path(s.out_dir) / f"{slug(bench.device_name)}.csv"
    print(f"make bench: profile {s.profile} on {bench.device_name} ({torch.get_num_threads()} CPU thread(s)); "
          f"{s.image_size} px, batch {s.batch_size}, N = {s.num_batches}, {s.repeats} repeats", flush=True)
    try:
        measure_every_model(bench, out)
        bench.use_runtime(s.runtimes[0])
        for native_size in s.authors_native_sizes:
            started = time.perf_counter()
            compare_with_authors(bench, native_size)
            print(f"  authors' pipeline, {native_size} px: {time.perf_counter() - started:.0f} s", flush=True)
        started = time.perf_counter()
        authors_loader_floor(bench)
        print(f"  authors' loader at {s.projection.image_size} px: {time.perf_counter() - started:.0f} s", flush=True)
    except KeyboardInterrupt:
        table = write_table(bench, out)
        print(f"interrupted: {out} holds the {len(table)} rows measured before the stop", file=sys.stderr, flush=True)
        raise
    table = write_table(bench, out)
    shown = ["part", "model", "metric", "value", "target", "detail"]
    widths = [None, None, 34, None, None, 70]
    if len(s.runtimes) > 1:
        shown, widths = ["runtime", *shown], [None, *widths]
    print(tabulate(table[shown], headers="keys", showindex=False, floatfmt=".4g", maxcolwidths=widths))
    print(f"wrote {out}")
    return table


def measure_every_model(bench: Bench, out: Path) -> None:
    """Parts 1, 2, 4 and 5: each model under each runtime in turn (the TF32 flags are process-wide),
    the CSV rewritten after each; then part 5's projection per runtime."""
    s = bench.s
    measured: dict[str, list[dict]] = {protocol: [] for protocol in s.runtimes}
    with tempfile.TemporaryDirectory() as tmp:
        for name in s.models:
            for protocol in s.runtimes:
                bench.use_runtime(protocol)
                started = time.perf_counter()
                measured[protocol].append(measure_model(bench, name, Path(tmp)))
                report_model(bench, measured[protocol][-1])
                write_table(bench, out)
                print(f"  {name}, {bench.describe_runtime()}: {time.perf_counter() - started:.0f} s", flush=True)
    for protocol in s.runtimes:
        bench.use_runtime(protocol)
        projection(bench, measured[protocol])


def write_table(bench: Bench, out: Path) -> pd.DataFrame:
    """The rows so far, by part, written atomically to out."""
    table = pd.DataFrame(bench.rows, columns=COLUMNS).sort_values("part", kind="stable")
    record_files.write_atomic(out, table.to_csv(index=False, float_format="%.6g").encode())
    return table

if __name__ == "__main__":
    raise SystemExit(main())
