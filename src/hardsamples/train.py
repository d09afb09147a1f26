"""The story of one training run, as a Hydra app.

    python -m hardsamples.train                                   # digits, quick preset
    python -m hardsamples.train preset=paper model=resnet18 dataset=cifar10 delta=0.2 seed=0
    python -m hardsamples.train experiment=demo                   # a grid of sweeps/ (make sweep)

A run owns its directory (results/runs/<sweep>/<run name>): a finished run is skipped, an
interrupted one resumes from its last checkpoint, and anything else starts fresh. In a sweep each
job goes through sweep.job.sweep_job, which records a failure and lets the other runs go on.

The story, in order (`run_held`): check the config; skip a run already over; build the data and the
update loop (loop.build_loop); resume from the checkpoint if the run was interrupted; then train
interval by interval, evaluating and writing the record after each (`train_and_record`), and end with
the final model's per-batch accuracies.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import math
import signal
import sys
import threading
import time
import uuid
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from hardsamples import record_files, records, slices
from hardsamples.config_checks.command_line import check_command_line, multirun_flag_first
from hardsamples.config_checks.data import check_split_sizes
from hardsamples.config_checks.loop import check_loop
from hardsamples.config_checks.settings import check_settings
from hardsamples.data import DeviceData, eval_subset, load_host_data, to_device, train_subset
from hardsamples.errors import ConfigError, Terminated, stop_reason
from hardsamples.evaluate import EvalResult, EvalSettings, eval_settings, evaluate, final_evaluation
from hardsamples.layout import CONF_DIR
from hardsamples.loop import Stopwatch, UpdateLoop, build_loop, device_clock, mean_segment_loss
from hardsamples.probe import RoundProbe
from hardsamples.record_files import RunHeader, batch_accuracy_rows, metrics_row
from hardsamples.records import RunRecord
from hardsamples.runtime import Runtime, make_runtime, threads_from_allocation
from hardsamples.sweep.job import bar_position, sweep_job
from hardsamples.wandb_mirror import WandbMirror

log = logging.getLogger("hardsamples")


def run(cfg: DictConfig, run_dir: Path) -> str:
    """Train one run to its end and return its status: finished or diverged (a run that fails or is
    stopped from outside raises, after recording itself failed or interrupted).

    The run holds its directory (record_files.hold_run_dir) from before it reads the old record until it
    has written its last file, so a second process on the same directory is refused, never mixed in.
    """
    check_settings(cfg)
    with record_files.hold_run_dir(run_dir) as writable, sigterm_raises():
        return run_held(cfg, Path(run_dir), writable)


@contextlib.contextmanager
def sigterm_raises():
    """While a run trains, SIGTERM raises Terminated, so run() records the run as interrupted before the
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
        for tmp in record_files.remove_temporary_files(run_dir):
            log.info("%s: removed %s, left by a process killed while writing it", run_dir, tmp.name)
    old = records.previous_run(run_dir, OmegaConf.to_container(cfg, resolve=True))
    if records.is_over(run_dir, old):
        log.info("%s: already %s, nothing to do", run_dir, old["status"])
        return old["status"]
    if not writable:
        raise ConfigError(f"{run_dir} is not writable: make it writable, or pass sweep_name=<new sweep> to"
                          " write the run elsewhere")
    threads_from_allocation()
    runtime = make_runtime(cfg)
    torch.manual_seed(cfg.seed)
    data = load_data(cfg, runtime)
    loop = build_loop(cfg, data, runtime)
    check_loop(cfg, loop)
    # Only now, with the data and the model known to work: input refused above leaves no .hydra/ or train.log.
    record_files.start_run_files(run_dir, cfg)
    log.info("%s: %s", cfg.run_name, settings_line(cfg))
    log.info("%s: %d training images in N = %d fixed batches, k = %d a round, %d updates in all, on %s%s",
             cfg.run_name, data.num_train, loop.num_batches, loop.policy.k, loop.budget, runtime.device,
             recorded_method(cfg, loop))
    record = RunRecord(run_dir, run_header(cfg, loop, runtime, old))
    stopwatch = resume_if_interrupted(cfg, loop, record, old)
    record.set_status("running", error=None)
    mirror = None
    try:
        waited = time.perf_counter()
        mirror = WandbMirror(cfg.logger.wandb, record.header, run_dir)
        stopwatch.already -= time.perf_counter() - waited  # W&B's start-up is not the run's time
        for row in record.metrics:  # a resumed W&B run drops the steps it already has
            mirror.log_interval(row)
        status = train_and_record(cfg, loop, record, mirror, eval_settings(cfg, runtime), stopwatch)
        if not OmegaConf.select(cfg, "record.keep_checkpoint", default=False):
            record.checkpoint_path.unlink(missing_ok=True)  # the run is over: nothing left to resume
    except BaseException as err:
        # a full disk may refuse this write too (or the directory is gone): the first error is the one to tell
        with contextlib.suppress(OSError, record_files.LostHold):
            record.set_status(ended_status(err), error=stop_reason(err))
        if mirror is not None:
            mirror.finish(ended_status(err))
        raise
    mirror.finish(status)
    log.info("%s: %s%s; the record is in %s (run.json, metrics.csv)", cfg.run_name, status, final_result(record),
             run_dir)
    return status


def settings_line(cfg: DictConfig) -> str:
    """What the run trains, as the keys that change it: a preset's defaults (quick: 16 px, 10 epochs)
    are easy to miss on one's own data."""
    preset = ""
    if HydraConfig.initialized():
        preset = HydraConfig.get().runtime.choices.get("preset") or ""
    return (f"model.name={cfg.model.name} dataset.name={cfg.dataset.name} image_size={cfg.image_size}"
            f" epochs={cfg.epochs} batch_size={cfg.batch_size} delta={cfg.delta} method={cfg.method.tag}"
            f" fidelity={cfg.fidelity.name} seed={cfg.seed}" + (f" (preset={preset})" if preset else ""))


def recorded_method(cfg: DictConfig, loop: UpdateLoop) -> str:
    """'; recorded as method standard (...)' where the record names another method than the command."""
    if loop.policy.name == cfg.method.tag:
        return ""
    why = " (at delta = 1 every batch is trained every round: Algorithm 1)" if loop.policy.name == "standard" else ""
    return f"; recorded as method {loop.policy.name}{why}"


def final_result(record: RunRecord) -> str:
    """', test top-1 87.15% after 20 intervals' when the last interval was evaluated."""
    last = record.metrics[-1] if record.metrics else {}
    if last.get("test_top1") is None:
        return ""
    intervals = int(last["interval"])
    return f", test top-1 {last['test_top1']:.2f}% after {intervals} interval{'s' * (intervals != 1)}"


def ended_status(err: BaseException) -> str:
    """interrupted: stopped from outside (SIGTERM, Ctrl-C, a pre-emption submitit requeues), resumes when
    run again; failed: the run itself raised."""
    return "interrupted" if isinstance(err, (SystemExit, KeyboardInterrupt, Terminated)) else "failed"


def load_data(cfg: DictConfig, runtime: Runtime) -> DeviceData:
    """The dataset on the training device, resized and normalised once; refused if it cannot give a number."""
    host = load_host_data(cfg)
    if cfg.dataset.get("subset") is not None:  # a fixed share of the training split (dataset.subset)
        seed = cfg.dataset.subset_seed if cfg.dataset.get("subset_seed") is not None else cfg.seed
        host = train_subset(host, cfg.dataset.subset, seed)
    check_split_sizes(cfg, len(host.train_labels), len(host.test_labels))
    return to_device(host, cfg.image_size, cfg.fidelity.normalization, runtime.device, runtime.memory_format)


def resume_if_interrupted(cfg: DictConfig, loop: UpdateLoop, record: RunRecord, old: dict | None) -> Stopwatch:
    """Put the loop and the record where the interrupted run's last checkpoint left them; a fresh
    run (no record or no checkpoint) starts its clock at zero."""
    path = record.checkpoint_path
    if not (old and path.exists()):
        return Stopwatch()
    saved = records.load_run_checkpoint(path, record.header["run_id"])
    check_trace_unchanged(cfg, old, record.directory, saved["loop"]["updates"])
    try:
        loop.load_state_dict(saved["loop"])
        record.load_state_dict(saved["record"])
    except (RuntimeError, KeyError, ValueError, TypeError) as err:  # e.g. a model of another shape
        raise ConfigError(f"{path} cannot be used ({type(err).__name__}): {records.start_over(path)}") from None
    record.header["resumed_from"].append(loop.state.updates)
    log.info("%s: resuming at update %d of %d", record.directory, loop.state.updates, loop.budget)
    if old.get("git_commit") != record.header["git_commit"]:
        log.warning("%s was started by the code at commit %s and resumes at commit %s: its records mix two"
                    " versions of the code (delete the directory to train it afresh with one)",
                    record.directory, old.get("git_commit"), record.header["git_commit"])
    return Stopwatch(already=saved["seconds"])


def check_trace_unchanged(cfg: DictConfig, old: dict, run_dir: Path, updates: int) -> None:
    """A resumed run appends to its trace: with record.trace changed since, trace.csv would have a gap."""
    before = old["config"].get("record", {}).get("trace", False)
    if updates > 0 and bool(before) != bool(cfg.record.trace):
        was, now_ = str(bool(before)).lower(), str(bool(cfg.record.trace)).lower()
        raise ConfigError(f"record.trace={now_} but the interrupted run in {run_dir} ran with record.trace={was}:"
                          f" rerun with record.trace={was} to resume it, or delete {run_dir} to start afresh")


def train_and_record(cfg, loop: UpdateLoop, record: RunRecord, mirror: WandbMirror,
                     settings: EvalSettings, stopwatch: Stopwatch) -> str:
    """Train interval by interval (N updates each), evaluating and writing the record after each."""
    data = loop.data
    train_ids = eval_subset(data.num_train, cfg.eval.train_subset)
    if train_ids is None:
        train_images, train_labels = data.train_images, data.train_labels
    else:
        train_ids = train_ids.to(data.train_labels.device)
        train_images, train_labels = data.train_images[train_ids], data.train_labels[train_ids]
    probe = attach_probe(cfg, loop, record)
    train = test = None
    with progress_bar(cfg, loop) as bar:
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
            if (broken := non_finite(loop.model, train, test)) is not None:  # the last update of the interval
                message = f"{broken} after interval {interval}: lower optimizer.lr or check the data"
                log.error(message)
                record.add_interval(row)
                record.set_status("diverged", error=message, finished_at=now())
                return "diverged"
            record.add_interval(row, record_files.trace_rows(segments) if cfg.record.trace else None,
                                probe.take_rows() if probe else None)
            if cfg.record.checkpoint:
                record.save_checkpoint(loop.state_dict(), stopwatch.seconds)
            mirror.log_interval(row)
            bar.set_postfix(train_loss=f"{train.loss:.4f}", test_top1=f"{test.top1:.2f}", refresh=False)
            log.info("%s  interval %d/%d  updates %d  train loss %.4f top1 %.2f  test loss %.4f top1 %.2f  %.1fs",
                     cfg.run_name, interval, cfg.epochs, loop.state.updates, train.loss, train.top1, test.loss,
                     test.top1, row["seconds"])
            if cfg.record.checkpoint and loop.state.updates < loop.budget:
                slices.stop_if_budget_spent()  # a sweep's time budget with at_budget=stop: the next slice resumes here
    write_final_accuracy(loop, record, settings, train if train_ids is None else None, test)
    record.set_status("finished", finished_at=now())
    return "finished"


def attach_probe(cfg: DictConfig, loop: UpdateLoop, record: RunRecord) -> RoundProbe | None:
    """With record.round_losses, the mechanism probe measures each interval's first round (probe.py);
    a policy that trains every batch chooses nothing, so it has nothing to probe."""
    if not cfg.record.get("round_losses", False) or loop.policy.k >= loop.num_batches:
        return None
    probe = RoundProbe(loop)
    probe.resume_after(record.round_losses)
    loop.on_round = probe
    return probe


LOG_LINE = "{desc}: {percentage:3.0f}% of {total_fmt} images, {elapsed} so far, {remaining} left, {rate_fmt}"


def non_finite(model: torch.nn.Module, train: EvalResult, test: EvalResult) -> str | None:
    """What is not finite after an interval, or None: the training losses are finite before each update, so
    only the evaluation and the weights show that the interval's last update diverged (with epochs=1, the
    run's last)."""
    for split, result in (("train", train), ("test", test)):
        if not math.isfinite(result.loss):
            return f"the {split} loss became {result.loss}"
    tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
    if tensors and not bool(torch.stack([t.isfinite().all() for t in tensors]).all()):
        return "the model's weights became non-finite"
    return None


@contextlib.contextmanager
def progress_bar(cfg: DictConfig, loop: UpdateLoop):
    """tqdm over the updates, shown in images with ETA and images/s (`progress`): auto, a bar on a
    terminal only (logs and sweeps keep their one line per interval); bar, a bar anywhere; log, a log
    line every progress_every_s seconds; off, none. In a sweep each job process draws on a line of its
    own (sweep.job.bar_position). Log lines are routed around the bar."""
    mode = OmegaConf.select(cfg, "progress", default="auto")  # checked by config_checks.settings
    if mode == "log":
        every = float(cfg.progress_every_s)
        options = {"file": LogLines(), "mininterval": every, "maxinterval": every, "delay": every,
                   "bar_format": LOG_LINE, "unit": " img", "disable": False}
    else:
        drawn = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        options = {"position": bar_position() if drawn else 0, "dynamic_ncols": True, "unit": "img", "disable": not drawn}
    bar = tqdm(total=loop.budget, initial=loop.state.updates, desc=cfg.run_name, unit_scale=cfg.batch_size,
               leave=False, **options)
    loop.on_update = bar.update  # host-side counting only: no device synchronisation
    try:
        with logging_redirect_tqdm():
            yield bar
    finally:
        loop.on_update = None
        bar.close()


class LogLines(io.TextIOBase):
    """A file for tqdm that logs each line it draws (progress=log): no carriage returns in a log file."""

    def write(self, text: str) -> int:
        line = text.strip("\r\n ")
        if line:
            log.info("%s", line)
        return len(text)


def write_final_accuracy(loop: UpdateLoop, record: RunRecord, settings: EvalSettings,
                         train: EvalResult | None, test: EvalResult | None) -> None:
    """batch_accuracy.csv: the final model's top-1 per evaluation batch, both kinds (record_files).

    The batch-level rows cover the whole training set, also when the intervals evaluated a subset;
    and a run resumed after its last row was written has no results at hand. In BatchNorm's train
    mode an evaluation moves only the running buffers, which that mode never reads, so these rows
    are the same whether or not the run was resumed; the interval kind still comes first."""
    data = loop.data
    if train is None:
        train = evaluate(loop.model, data, data.train_images, data.train_labels, settings)
    if test is None:
        test = evaluate(loop.model, data, data.test_images, data.test_labels, settings)
    final = final_evaluation(loop.model, data, settings, train, test)
    record.write_batch_accuracy(batch_accuracy_rows("interval", train, test) + batch_accuracy_rows("final", *final))


def interval_row(interval, loop, seen_loss, train, test, stopwatch, train_seconds) -> dict:
    return metrics_row(interval, loop.state.updates, seen_loss, train, test, stopwatch.seconds, train_seconds,
                       loop.state.extra_forward_passes)


def run_header(cfg: DictConfig, loop: UpdateLoop, runtime: Runtime, old: dict | None) -> dict:
    """run.json's fields (record_files.RunHeader); identity and start kept from an interrupted run."""
    data = loop.data
    return asdict(RunHeader(
        status="running", error=None, run_id=old["run_id"] if old else uuid.uuid4().hex[:12],
        run_name=cfg.run_name, sweep=cfg.sweep_name, model=cfg.model.name, dataset=cfg.dataset.name,
        method=loop.policy.name, delta=cfg.delta, seed=cfg.seed, fidelity=cfg.fidelity.name,
        num_batches=loop.num_batches, k=loop.policy.k, epochs=cfg.epochs, update_budget=loop.budget,
        batch_size=cfg.batch_size, image_size=cfg.image_size, num_train=data.num_train,
        num_test=int(data.test_labels.shape[0]), num_classes=data.num_classes, channels=data.channels,
        device=str(runtime.device), threads=torch.get_num_threads(), cpu=records.cpu_name(),
        precision=runtime.precision, matmul_allow_tf32=runtime.matmul_allow_tf32,
        cudnn_allow_tf32=runtime.cudnn_allow_tf32, versions=records.versions(), git_commit=records.git_commit(),
        started_at=old["started_at"] if old else now(), finished_at=None,
        resumed_from=old.get("resumed_from", []) if old else [],
        config=OmegaConf.to_container(cfg, resolve=True)))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# An absolute path (layout.CONF_DIR): a relative one makes Hydra look for a package hardsamples.conf
# when the entry is the console script hardsamples-train rather than `python -m hardsamples.train`.
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> str:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return sweep_job(cfg, run_dir, int(hydra_cfg.job.num), run_one=run,
                         jobs_per_gpu=OmegaConf.select(hydra_cfg, "launcher.jobs_per_gpu", default=1))
    try:
        return run(cfg, run_dir)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except Terminated as err:
        print(f"error: {err}: run the same command again to resume from the last checkpoint", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    except KeyboardInterrupt:  # Ctrl-C, or SIGINT from a time limit (timeout --signal=INT): recorded interrupted
        print("error: interrupted (Ctrl-C or SIGINT): run the same command again to resume from the last"
              " checkpoint", file=sys.stderr)
        raise SystemExit(128 + signal.SIGINT) from None
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"error: cannot write the run's records under {run_dir} ({os.strerror(err.errno)}): free space there"
              " (or raise the quota), then run the same command again: it resumes from the last checkpoint",
              file=sys.stderr)
        raise SystemExit(2) from None


def main() -> None:
    """The console script hardsamples-train, equal to `python -m hardsamples.train`: that puts the working
    directory first on sys.path, so a user's module there (dataset.data._target_=my_data.make_data) is
    found; a console script's own sys.path starts with its bin/ folder."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    sys.argv[1:] = multirun_flag_first(sys.argv[1:])
    check_command_line(sys.argv[1:])
    try:
        hydra_main()
    except Terminated as err:  # a sweep (-m): the job running was recorded failed; a rerun resumes it
        print(f"error: {err}: run the same command again to resume", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None


if __name__ == "__main__":
    main()
