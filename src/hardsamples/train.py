"""The study's training run, as a Hydra app.

    python -m hardsamples.train                                   # digits, quick preset
    python -m hardsamples.train preset=paper model=resnet18 dataset=cifar10 delta=0.2 seed=0

A run finds its own directory (results/runs/<sweep>/<run name>): a finished run is skipped, an
interrupted one resumes from its last checkpoint, and anything else starts fresh.

    python -m hardsamples.train -m --config-dir sweeps --config-name demo   # a grid (make sweep)

In a sweep (-m) one run's failure is recorded and the other runs go on; see `sweep_job`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import signal
import sys
import threading
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hardsamples import records
from hardsamples.cli import check_group_choices
from hardsamples.data import eval_subset, load_host_data, make_fixed_batches, to_device
from hardsamples.errors import ConfigError
from hardsamples.evaluate import EvalResult, EvalSettings, evaluate
from hardsamples.launch import JobNote, claim_gpu, ended_note_of_this_job
from hardsamples.loop import Stopwatch, UpdateLoop, device_clock, mean_segment_loss, segments_to_trace
from hardsamples.models import build_model
from hardsamples.records import RunRecord
from hardsamples.runtime import make_runtime
from hardsamples.selection import build_policy
from hardsamples.wandb_mirror import WandbMirror

log = logging.getLogger("hardsamples")
# Keys that change where a run is logged or read from, never what it computes.
NOT_COMPARED = ("logger", "data_dir", "sweep_name", "record")
OVER = ("finished", "diverged")  # a run with one of these statuses is skipped when run again


WANDB_MODES = ("auto", "online", "offline", "disabled")
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.manual_seed accepts


def number(cfg: DictConfig, key: str, example: str) -> float:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value} is not a number: write a number, e.g. {example}")
    return value


def whole(cfg: DictConfig, key: str, example: str) -> int:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}={value} is not a whole number: write one, e.g. {example}")
    return value


def at_least(cfg: DictConfig, key: str, minimum: int, why: str = "") -> int:
    value = whole(cfg, key, f"{key}={max(minimum, 2 * minimum)}")
    if value < minimum:
        raise ConfigError(f"{key}={value} is too small{why}: use {key}={minimum} or more")
    return value


def check_settings(cfg: DictConfig) -> None:
    """The whole config, before anything is written: types, ranges and choices, each refused in one
    line naming the key and the fix. What depends on the data (split sizes) is checked in check_data."""
    delta = number(cfg, "delta", "delta=0.5")
    if not 0.0 < delta <= 1.0:
        raise ConfigError(f"delta={cfg.delta} is outside (0, 1]: use 1.0 for Algorithm 1 or a fraction such as 0.2")
    if whole(cfg, "epochs", "epochs=10") < 1:
        raise ConfigError(f"epochs={cfg.epochs} must be at least 1: use epochs=1 or more")
    at_least(cfg, "batch_size", 2, " for BatchNorm (it needs 2 samples a batch)")
    at_least(cfg, "image_size", 2, " (images are resized to image_size x image_size)")
    seed = whole(cfg, "seed", "seed=0")
    if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ConfigError(f"seed={seed} is outside [-2^63, 2^64 - 1], torch's seeds: pick a smaller seed, e.g. seed=0")
    for key, example in (("optimizer.lr", "0.005"), ("optimizer.momentum", "0.9"), ("optimizer.weight_decay", "0.0")):
        value = number(cfg, key, f"{key}={example}")
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{key}={value} is not a finite number >= 0: use e.g. {key}={example}")
    at_least(cfg, "eval.batch_size", 1)
    if OmegaConf.select(cfg, "eval.train_subset") is not None:
        whole(cfg, "eval.train_subset", "eval.train_subset=10000")
        if cfg.eval.train_subset < 1:
            raise ConfigError(f"eval.train_subset={cfg.eval.train_subset} is too small: use a sample count of 1 or"
                              " more, or eval.train_subset=null for every training sample")
    mode = OmegaConf.select(cfg, "logger.wandb.mode", default="disabled")
    if mode not in WANDB_MODES:
        raise ConfigError(f"logger.wandb.mode={mode} is unknown: use {', '.join(WANDB_MODES)}")
    if cfg.dataset.get("source") == "generated":
        at_least(cfg, "dataset.num_train", 1)
        at_least(cfg, "dataset.num_test", 1, " (a run needs test samples to measure)")
        at_least(cfg, "dataset.num_classes", 2, " (at least 2 classes to tell apart)")
        at_least(cfg, "dataset.native_size", 1)
        at_least(cfg, "dataset.channels", 1)
        number(cfg, "dataset.noise", "dataset.noise=0.25")
        number(cfg, "dataset.hard_fraction", "dataset.hard_fraction=0.1")


def check_data(cfg: DictConfig, num_train: int, num_test: int) -> None:
    """Combinations that could not produce a number: a split smaller than one evaluation batch under
    fidelity.eval_drop_last (every batch dropped, so its metrics would be NaN), an empty split."""
    if cfg.batch_size > num_train:
        raise ConfigError(f"batch_size={cfg.batch_size} is larger than the {num_train} training"
                          f" samples of {cfg.dataset.name}: pick batch_size <= {num_train}")
    if num_test < 1:
        raise ConfigError(f"the test split of {cfg.dataset.name} is empty: pick a dataset with test samples")
    if not cfg.fidelity.eval_drop_last:
        return
    fix = "or fidelity.eval_drop_last=false to keep the last partial batch"
    if num_test < cfg.batch_size:
        raise ConfigError(f"the test split has {num_test} samples, fewer than one evaluation batch of"
                          f" {cfg.batch_size} under fidelity.eval_drop_last=true (its metrics would be NaN):"
                          f" use batch_size <= {num_test}, {fix}")
    subset = cfg.eval.train_subset
    if subset is not None and subset < min(num_train, cfg.batch_size):
        raise ConfigError(f"eval.train_subset={subset} is fewer than one evaluation batch of {cfg.batch_size}"
                          f" under fidelity.eval_drop_last=true (its metrics would be NaN): use"
                          f" eval.train_subset >= {cfg.batch_size} or null, {fix}")


def check_single_sample_batches(cfg: DictConfig, model: torch.nn.Module, data) -> None:
    """Under eval_batchnorm=train every evaluation batch goes through BatchNorm's batch statistics; a
    last batch of one sample fails there when a BatchNorm layer then sees a single value per channel
    (a small image at a deep stage). Tried once on a copy of the model, before anything is written."""
    if cfg.fidelity.eval_batchnorm != "train":
        return
    size = cfg.batch_size
    splits = [("test split", int(data.test_labels.shape[0])), ("training set", data.num_train)]
    if cfg.eval.train_subset is not None and cfg.eval.train_subset < data.num_train:
        splits.append(("eval.train_subset", int(cfg.eval.train_subset)))
    ones = [name for name, n in splits if n % size == 1]
    if not ones:
        return
    probe = copy.deepcopy(model).train()
    try:
        with torch.no_grad():
            probe(data.normalise(data.test_images[:1]))
    except ValueError as err:
        if "Expected more than 1 value per channel" not in str(err):
            raise
        raise ConfigError(f"the {ones[0]}'s last evaluation batch holds 1 sample, which BatchNorm in train mode"
                          f" (fidelity.eval_batchnorm=train) cannot evaluate at image_size={cfg.image_size}:"
                          f" use a batch_size that leaves more than one sample in the last batch, a larger"
                          f" image_size, or fidelity.eval_batchnorm=eval") from None
    finally:
        del probe


def comparable_config(cfg: DictConfig) -> dict:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in resolved.items() if k not in NOT_COMPARED}


def read_record(run_dir: Path) -> dict | None:
    """run.json, or None when there is none; one that cannot be read or is no run record is refused
    with a line naming what to delete (a kill mid-write never leaves one: this is outside damage)."""
    path = Path(run_dir) / "run.json"
    if not path.exists():
        return None
    fix = f"delete the directory {run_dir} to start that run afresh"
    try:
        record = records.read_json(path)
    except (OSError, ValueError) as err:  # ValueError: not JSON, or not text
        problem = "it is empty" if path.stat().st_size == 0 else f"{type(err).__name__}: {err}".replace("\n", " ")
        raise ConfigError(f"{path} cannot be read ({problem}): {fix}") from None
    if not isinstance(record, dict) or record.get("status") not in records.STATUSES \
            or not isinstance(record.get("config"), dict):
        raise ConfigError(f"{path} cannot be used (not a run record: no status and config): {fix}")
    return record


def check_complete(run_dir: Path, old: dict) -> None:
    """A run recorded as over must still have its rows; otherwise it is refused, never skipped as done."""
    path = Path(run_dir) / "metrics.csv"
    fix = f"delete the directory {run_dir} to train that run again"
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise ConfigError(f"{run_dir} is {old['status']} but its metrics.csv is missing: {fix}") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{run_dir} is {old['status']} but its metrics.csv cannot be read ({err}): {fix}") from None
    rows = max(0, len(lines) - 1)
    if rows == 0:
        raise ConfigError(f"{run_dir} is {old['status']} but its metrics.csv has no rows: {fix}")
    if old["status"] == "finished":
        expected = old.get("epochs")
        if isinstance(expected, int) and rows != expected:
            raise ConfigError(f"{run_dir} is finished but its metrics.csv has {rows} of {expected} rows: {fix}")
        if not (Path(run_dir) / "batch_accuracy.csv").exists():
            raise ConfigError(f"{run_dir} is finished but its batch_accuracy.csv is missing: {fix}")


def previous_run(run_dir: Path, cfg: DictConfig) -> dict | None:
    """The record already in run_dir, if any; refuses one made with a different config."""
    old = read_record(run_dir)
    if old is None:
        return None
    if comparable_config(OmegaConf.create(old.get("config", {}))) != comparable_config(cfg):
        raise ConfigError(f"{run_dir} holds a run with a different config: pass run_name=<new name>"
                          " or sweep_name=<new sweep>, or delete that directory")
    return old


def run(cfg: DictConfig, run_dir: Path) -> str:
    """Train one run to its end and return its status: finished, diverged or failed.

    The run holds its directory (records.hold_run_dir) from before it reads the old record until it
    has written its last file, so a second process on the same directory is refused, never mixed in.
    """
    check_settings(cfg)
    with records.hold_run_dir(run_dir) as writable, sigterm_raises():
        return run_held(cfg, Path(run_dir), writable)


class Terminated(BaseException):
    """SIGTERM (what a cluster or `kill` sends first): the run is recorded as failed, then the process ends."""


@contextlib.contextmanager
def sigterm_raises():
    """While a run trains, SIGTERM raises Terminated, so run() records the run as failed before the
    process ends. Only where SIGTERM has its default action: submitit's jobs keep their own handler."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
        raise Terminated("interrupted by SIGTERM")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_held(cfg: DictConfig, run_dir: Path, writable: bool = True) -> str:
    if writable:
        for tmp in records.remove_temporary_files(run_dir):
            log.info("%s: removed %s, left by a process killed while writing it", run_dir, tmp.name)
    old = previous_run(run_dir, cfg)
    if old and old["status"] in OVER:
        check_complete(run_dir, old)
        log.info("%s: already %s, nothing to do", run_dir, old["status"])
        return old["status"]
    if not writable:
        raise ConfigError(f"{run_dir} is not writable: make it writable, or pass sweep_name=<new sweep> to"
                          " write the run elsewhere")

    runtime = make_runtime(cfg)
    torch.manual_seed(cfg.seed)
    host = load_host_data(cfg)
    check_data(cfg, len(host.train_labels), len(host.test_labels))
    data = to_device(host, cfg.image_size, cfg.fidelity.normalization, runtime.device, runtime.memory_format)
    batches = make_fixed_batches(data.num_train, cfg.batch_size, drop_last=cfg.fidelity.drop_last,
                                 partition=cfg.fidelity.partition, seed=cfg.seed, device=runtime.device)
    model = build_model(cfg.model.name, data.num_classes, data.channels)
    model = model.to(runtime.device, memory_format=runtime.memory_format)
    check_single_sample_batches(cfg, model, data)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optimizer.lr, momentum=cfg.optimizer.momentum,
                                weight_decay=cfg.optimizer.weight_decay, **runtime.optimizer_kwargs())
    policy = build_policy(cfg, batches.shape[0], runtime.device)
    loop = UpdateLoop(model, optimizer, policy, data, batches, cfg.epochs, runtime.autocast, runtime.memory_format)
    if cfg.compile:
        loop.forward = torch.compile(model)

    header = run_header(cfg, loop, data, runtime, old)
    record = RunRecord(run_dir, header)
    stopwatch = Stopwatch()
    checkpoint = record.checkpoint_path
    if old and checkpoint.exists():
        saved = load_checkpoint(checkpoint, record.header["run_id"])
        check_trace_unchanged(cfg, old, run_dir, saved)
        stopwatch = resume(loop, record, saved)
        record.header["resumed_from"].append(loop.state.updates)
        log.info("%s: resuming at update %d of %d", run_dir, loop.state.updates, loop.budget)
    record.set_status("running", error=None)
    mirror = None
    try:
        waited = time.perf_counter()
        mirror = WandbMirror(cfg.logger.wandb, header, run_dir)
        stopwatch.already -= time.perf_counter() - waited  # W&B's start-up is not the run's time
        for row in record.metrics:  # a resumed W&B run drops the steps it already has
            mirror.log_interval(row)
        status = train_and_record(cfg, loop, record, mirror, eval_settings(cfg, runtime), stopwatch)
    except BaseException as err:
        record.set_status("failed", error=stop_reason(err))
        if mirror is not None:
            mirror.finish("failed")
        raise
    mirror.finish(status)
    return status


def train_and_record(cfg, loop: UpdateLoop, record: RunRecord, mirror: WandbMirror,
                     settings: EvalSettings, stopwatch: Stopwatch) -> str:
    data = loop.data
    train_ids = eval_subset(data.num_train, cfg.eval.train_subset)
    if train_ids is None:
        train_images, train_labels = data.train_images, data.train_labels
    else:
        train_ids = train_ids.to(data.train_labels.device)
        train_images, train_labels = data.train_images[train_ids], data.train_labels[train_ids]
    train = test = None
    while loop.state.updates < loop.budget:
        started = device_clock(loop.batches.device)  # the updates alone: Table 1's time per update
        segments = loop.train_interval()
        train_seconds = device_clock(loop.batches.device) - started
        seen_loss = mean_segment_loss(segments)
        interval = -(-loop.state.updates // loop.num_batches)
        if not math.isfinite(seen_loss):
            message = f"training loss became {seen_loss} in interval {interval}: lower optimizer.lr or check the data"
            log.error(message)
            record.add_interval(interval_row(interval, loop, seen_loss, None, None, stopwatch, train_seconds))
            record.set_status("diverged", error=message, finished_at=now())
            return "diverged"
        train = evaluate(loop.model, data, train_images, train_labels, settings)
        test = evaluate(loop.model, data, data.test_images, data.test_labels, settings)
        row = interval_row(interval, loop, seen_loss, train, test, stopwatch, train_seconds)
        record.add_interval(row, segments_to_trace(segments) if cfg.record.trace else None)
        if cfg.record.checkpoint:
            records.save_checkpoint(record.checkpoint_path, checkpoint_state(loop, record, stopwatch))
        mirror.log_interval(row)
        log.info("%s  interval %d/%d  updates %d  train loss %.4f top1 %.2f  test loss %.4f top1 %.2f  %.1fs",
                 cfg.run_name, interval, cfg.epochs, loop.state.updates, train.loss, train.top1, test.loss, test.top1,
                 row["seconds"])
    # The batch-level rows cover the whole training set, also when the intervals evaluated a subset;
    # and a run resumed after its last row was written has no results at hand. In BatchNorm's train
    # mode an evaluation moves only the running buffers, which that mode never reads, so these rows
    # are the same whether or not the run was resumed; the interval kind still comes first.
    if train is None or train_ids is not None:
        train = evaluate(loop.model, data, data.train_images, data.train_labels, settings)
    if test is None:
        test = evaluate(loop.model, data, data.test_images, data.test_labels, settings)
    record.write_batch_accuracy(batch_rows("interval", train, test)
                                + batch_rows("final", *final_evaluation(loop, settings, train, test)))
    record.set_status("finished", finished_at=now())
    return "finished"


def final_evaluation(loop: UpdateLoop, settings: EvalSettings, train: EvalResult,
                     test: EvalResult) -> tuple[EvalResult, EvalResult]:
    """The final model as the authors' metrics.py evaluated it: every sample in batches of batch_size,
    shuffle=False, the last partial batch its own batch; the paper's +/- is a t-interval over these.
    Without drop_last the interval kind already is exactly that, and is reused."""
    if not settings.drop_last:
        return train, test
    final = replace(settings, average="per_batch", drop_last=False)
    data = loop.data
    return (evaluate(loop.model, data, data.train_images, data.train_labels, final),
            evaluate(loop.model, data, data.test_images, data.test_labels, final))


def batch_rows(evaluation: str, train: EvalResult, test: EvalResult) -> list[dict]:
    return [{"split": split, "evaluation": evaluation, "batch": i, "samples": n, "top1": acc}
            for split, result in (("train", train), ("test", test))
            for i, (n, acc) in enumerate(zip(result.batch_sizes, result.batch_top1))]


def interval_row(interval, loop, seen_loss, train, test, stopwatch, train_seconds) -> dict:
    return {"interval": interval, "updates": loop.state.updates,
            "train_loss": train.loss if train else None, "train_top1": train.top1 if train else None,
            "seen_train_loss": seen_loss,
            "test_loss": test.loss if test else None, "test_top1": test.top1 if test else None,
            "seconds": round(stopwatch.seconds, 3), "train_seconds": round(train_seconds, 6),
            "extra_forward_passes": loop.state.extra_forward_passes}


def eval_settings(cfg, runtime) -> EvalSettings:
    paper_batches = cfg.fidelity.eval_batchnorm == "train"  # BatchNorm then sees the training batch size
    return EvalSettings(
        batchnorm=cfg.fidelity.eval_batchnorm, average=cfg.fidelity.eval_average,
        drop_last=cfg.fidelity.eval_drop_last,
        forward_batch_size=cfg.batch_size if paper_batches else cfg.eval.batch_size,
        metric_batch_size=cfg.batch_size, autocast=runtime.autocast, memory_format=runtime.memory_format)


def run_header(cfg, loop: UpdateLoop, data, runtime, old: dict | None) -> dict:
    return {
        "status": "running", "error": None,
        "run_id": old["run_id"] if old else uuid.uuid4().hex[:12],
        "run_name": cfg.run_name, "sweep": cfg.sweep_name,
        "model": cfg.model.name, "dataset": cfg.dataset.name, "method": loop.policy.name,
        "delta": cfg.delta, "seed": cfg.seed, "fidelity": cfg.fidelity.name,
        "num_batches": loop.num_batches, "k": getattr(loop.policy, "k", loop.num_batches),
        "epochs": cfg.epochs, "update_budget": loop.budget, "batch_size": cfg.batch_size,
        "image_size": cfg.image_size, "num_train": data.num_train, "num_test": int(data.test_labels.shape[0]),
        "num_classes": data.num_classes, "channels": data.channels, "device": str(runtime.device),
        "precision": runtime.precision, "matmul_allow_tf32": runtime.matmul_allow_tf32,
        "cudnn_allow_tf32": runtime.cudnn_allow_tf32,  # null on the CPU
        "versions": records.versions(), "git_commit": records.git_commit(),
        "started_at": old["started_at"] if old else now(), "finished_at": None,
        "resumed_from": old.get("resumed_from", []) if old else [],  # the update count at each resume
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def checkpoint_state(loop: UpdateLoop, record: RunRecord, stopwatch: Stopwatch) -> dict:
    state = loop.state
    return {
        "model": loop.model.state_dict(), "optimizer": loop.optimizer.state_dict(),
        "policy": loop.policy.state_dict(), "updates": state.updates,
        "pending_ids": None if state.pending_ids is None else state.pending_ids.cpu(),
        "pending_round": state.pending_round, "extra_forward_passes": state.extra_forward_passes,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "metrics": record.metrics, "trace": record.trace, "seconds": stopwatch.seconds,
        "run_id": record.header["run_id"],
    }


CHECKPOINT_KEYS = ("model", "optimizer", "policy", "updates", "pending_ids", "pending_round", "extra_forward_passes",
                   "rng_cpu", "rng_cuda", "metrics", "trace", "seconds")


def start_over(path: Path) -> str:
    """The fix for a checkpoint that cannot be used."""
    return f"delete {path} and run again (the run then starts over from update 0)"


def load_checkpoint(path: Path, run_id: str) -> dict:
    """checkpoint.pt of this run, or a one-line refusal naming the file to delete."""
    fix = start_over(path)
    try:
        saved = records.load_checkpoint(path)
    except Exception as err:  # torch raises many kinds for a truncated or foreign file
        problem = "it is empty" if path.stat().st_size == 0 else type(err).__name__
        raise ConfigError(f"{path} cannot be read ({problem}): {fix}") from None
    if not isinstance(saved, dict) or any(key not in saved for key in CHECKPOINT_KEYS):
        raise ConfigError(f"{path} cannot be used (not a checkpoint of this code): {fix}")
    if saved.get("run_id") not in (None, run_id):  # checkpoints from before run_id was saved have none
        raise ConfigError(f"{path} belongs to run {saved['run_id']}, not to this run {run_id}: {fix}")
    return saved


def check_trace_unchanged(cfg: DictConfig, old: dict, run_dir: Path, saved: dict) -> None:
    """A resumed run appends to its trace: with record.trace changed since, trace.csv would have a gap."""
    before = old["config"].get("record", {}).get("trace", False)
    if saved["updates"] > 0 and bool(before) != bool(cfg.record.trace):
        was, now_ = str(bool(before)).lower(), str(bool(cfg.record.trace)).lower()
        raise ConfigError(f"record.trace={now_} but the interrupted run in {run_dir} ran with record.trace={was}:"
                          f" rerun with record.trace={was} to resume it, or delete {run_dir} to start afresh")


def resume(loop: UpdateLoop, record: RunRecord, saved: dict) -> Stopwatch:
    try:
        return restore(loop, record, saved)
    except (RuntimeError, KeyError, ValueError, TypeError) as err:  # e.g. a model of another shape
        path = record.checkpoint_path
        raise ConfigError(f"{path} cannot be used ({type(err).__name__}): {start_over(path)}") from None


def restore(loop: UpdateLoop, record: RunRecord, saved: dict) -> Stopwatch:
    device = loop.batches.device
    loop.model.load_state_dict(saved["model"])
    loop.optimizer.load_state_dict(saved["optimizer"])
    loop.policy.load_state_dict(saved["policy"])
    state = loop.state
    state.updates = saved["updates"]
    state.pending_ids = None if saved["pending_ids"] is None else saved["pending_ids"].to(device)
    state.pending_round = saved["pending_round"]
    state.extra_forward_passes = saved["extra_forward_passes"]
    torch.set_rng_state(saved["rng_cpu"])
    if saved["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["rng_cuda"])
    record.metrics, record.trace = list(saved["metrics"]), list(saved["trace"])
    return Stopwatch(already=saved["seconds"])


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@hydra.main(version_base="1.3", config_path="../../conf", config_name="config")
def hydra_main(cfg: DictConfig) -> str:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return sweep_job(cfg, run_dir, int(hydra_cfg.job.num))
    try:
        return run(cfg, run_dir)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except Terminated as err:
        print(f"error: {err}: run the same command again to resume from the last checkpoint", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None


def sweep_job(cfg: DictConfig, run_dir: Path, job_num: int) -> str:
    """One job of a sweep: returns its outcome (finished, resumed, skipped, diverged or failed).

    A failure is written to job.json and returned, never raised: in Hydra 1.3 a job that raises makes
    the sweeper raise once the batch is done, which ends the sweep without its summary. KeyboardInterrupt
    and SystemExit still end the job (a SLURM pre-emption exits this way, and is requeued by submitit).
    """
    gpu = claim_gpu(job_num)
    if gpu is not None:
        log.info("%s: job %d runs on GPU %s", cfg.run_name, job_num, gpu)
    try:
        with records.hold_run_dir(run_dir):
            return sweep_job_held(cfg, run_dir, job_num)
    except ConfigError as err:  # the directory is in use (or is a file): this job's note goes beside it
        log.error("%s failed: %s", cfg.run_name, err)
        JobNote.refused(run_dir, job_num, f"{type(err).__name__}: {err}")
        return "failed"


def sweep_job_held(cfg: DictConfig, run_dir: Path, job_num: int) -> str:
    ended = ended_note_of_this_job(run_dir)
    if ended is not None and (read_record(run_dir) or {}).get("status") in OVER:
        log.info("%s: requeued after it ended (%s): nothing to do", cfg.run_name, ended["outcome"])
        return ended["outcome"]
    note = JobNote(run_dir, job_num)
    try:
        before = read_record(run_dir)
        status = run(cfg, run_dir)
    except Exception as err:
        if isinstance(err, ConfigError):
            log.error("%s failed: %s", cfg.run_name, err)
        else:
            log.exception("%s failed", cfg.run_name)
        note.close("failed", f"{type(err).__name__}: {err}")
        return "failed"
    except (Terminated, SystemExit, KeyboardInterrupt) as err:  # the job process ends: note why, then end
        note.close("failed", stop_reason(err))
        raise
    after = read_record(run_dir)
    outcome = job_outcome(before, after, status)
    note.close(outcome, after.get("error"))
    return outcome


def stop_reason(err: BaseException) -> str:
    """run.json's error for a run that did not end by itself. A SystemExit inside a run is submitit
    ending a pre-empted or timed-out job it has requeued (or a rerun's business)."""
    reason = f"{type(err).__name__}: {err}"
    if isinstance(err, (SystemExit, KeyboardInterrupt, Terminated)):
        reason += (" (stopped before its end: pre-emption, time limit, cancel or signal); a requeued job or a"
                   " rerun resumes from the last checkpoint")
    return reason


def job_outcome(before: dict | None, after: dict, status: str) -> str:
    """What a job did, from the run record before and after it: a run already over is skipped."""
    if before and before["status"] in OVER:
        return "skipped"
    resumes_before = len(before.get("resumed_from", [])) if before else 0
    if status == "finished" and len(after.get("resumed_from", [])) > resumes_before:
        return "resumed"
    return status


def main() -> None:
    check_group_choices(sys.argv[1:])
    try:
        hydra_main()
    except Terminated as err:  # a sweep (-m): the job running was recorded failed; a rerun resumes it
        print(f"error: {err}: run the same command again to resume", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None


if __name__ == "__main__":
    main()
