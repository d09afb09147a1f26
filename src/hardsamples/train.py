"""The study's training run, as a Hydra app.

    python -m hardsamples.train                                   # digits, quick preset
    python -m hardsamples.train preset=paper model=resnet18 dataset=cifar10 delta=0.2 seed=0

A run finds its own directory (results/runs/<sweep>/<run name>): a finished run is skipped, an
interrupted one resumes from its last checkpoint, and anything else starts fresh.

    python -m hardsamples.train -m --config-dir sweeps --config-name demo   # a grid (make sweep)

In a sweep (-m) one run's failure is recorded and the other runs go on; see `sweep_job`.
"""

from __future__ import annotations

import logging
import math
import sys
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
from hardsamples.launch import JobNote, claim_gpu
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


def check_settings(cfg: DictConfig) -> None:
    if not 0.0 < cfg.delta <= 1.0:
        raise ConfigError(f"delta={cfg.delta} is outside (0, 1]: use 1.0 for Algorithm 1 or a fraction such as 0.2")
    if cfg.epochs < 1:
        raise ConfigError(f"epochs={cfg.epochs} must be at least 1")
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size={cfg.batch_size} must be at least 1")


def comparable_config(cfg: DictConfig) -> dict:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in resolved.items() if k not in NOT_COMPARED}


def read_record(run_dir: Path) -> dict | None:
    path = run_dir / "run.json"
    return records.read_json(path) if path.exists() else None


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
    """Train one run to its end and return its status: finished, diverged or failed."""
    check_settings(cfg)
    old = previous_run(run_dir, cfg)
    if old and old["status"] in OVER:
        log.info("%s: already %s, nothing to do", run_dir, old["status"])
        return old["status"]

    runtime = make_runtime(cfg)
    torch.manual_seed(cfg.seed)
    host = load_host_data(cfg)
    if cfg.batch_size > len(host.train_labels):
        raise ConfigError(f"batch_size={cfg.batch_size} is larger than the {len(host.train_labels)} training"
                          f" samples of {cfg.dataset.name}: pick batch_size <= {len(host.train_labels)}")
    data = to_device(host, cfg.image_size, cfg.fidelity.normalization, runtime.device, runtime.memory_format)
    batches = make_fixed_batches(data.num_train, cfg.batch_size, drop_last=cfg.fidelity.drop_last,
                                 partition=cfg.fidelity.partition, seed=cfg.seed, device=runtime.device)
    model = build_model(cfg.model.name, data.num_classes, data.channels)
    model = model.to(runtime.device, memory_format=runtime.memory_format)
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
        stopwatch = resume(loop, record, records.load_checkpoint(checkpoint))
        record.header["resumed_from"].append(loop.state.updates)
        log.info("%s: resuming at update %d of %d", run_dir, loop.state.updates, loop.budget)
    record.set_status("running", error=None)
    mirror = WandbMirror(cfg.logger.wandb, header, run_dir)
    try:
        for row in record.metrics:  # a resumed W&B run drops the steps it already has
            mirror.log_interval(row)
        status = train_and_record(cfg, loop, record, mirror, eval_settings(cfg, runtime), stopwatch)
    except BaseException as err:
        record.set_status("failed", error=f"{type(err).__name__}: {err}")
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
    }


def resume(loop: UpdateLoop, record: RunRecord, saved: dict) -> Stopwatch:
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


def sweep_job(cfg: DictConfig, run_dir: Path, job_num: int) -> str:
    """One job of a sweep: returns its outcome (finished, resumed, skipped, diverged or failed).

    A failure is written to job.json and returned, never raised: in Hydra 1.3 a job that raises makes
    the sweeper raise once the batch is done, which ends the sweep without its summary. KeyboardInterrupt
    and SystemExit still end the job (a SLURM pre-emption exits this way, and is requeued by submitit).
    """
    gpu = claim_gpu(job_num)
    if gpu is not None:
        log.info("%s: job %d runs on GPU %s", cfg.run_name, job_num, gpu)
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
    after = read_record(run_dir)
    outcome = job_outcome(before, after, status)
    note.close(outcome, after.get("error"))
    return outcome


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
    hydra_main()


if __name__ == "__main__":
    main()
