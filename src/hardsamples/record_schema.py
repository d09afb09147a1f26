"""What a run writes, defined once: the run.json fields, the CSV columns and the statuses.

The writer (records.py, train.py) and every reader (analysis/loading.py, the W&B mirror, the sweep
job, the tests) import these names. No torch here, so `make tables` loads without it.

  run.json            RunHeader below: identity, sizes, versions, status, the resolved config
  metrics.csv         METRIC_COLUMNS, one row per interval (N updates)
  trace.csv           TRACE_COLUMNS, one row per update (record.trace=true)
  round_losses.csv    ROUND_LOSS_COLUMNS, one row per interval's first round (record.round_losses=true:
                      probe.py, the mechanism check)
  batch_accuracy.csv  BATCH_ACCURACY_COLUMNS, the final model's top-1 per evaluation batch
  checkpoint.pt       everything needed to resume (records.save_checkpoint)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

# interrupted: stopped from outside (a signal, Ctrl-C, a pre-emption) and resumed when run again.
STATUSES = ("running", "finished", "diverged", "failed", "interrupted")
OVER = ("finished", "diverged")  # a run with one of these statuses is skipped when run again
# Config keys that change where a run is logged or read from, never what it computes: two runs that
# differ only here are the same run (a rerun skips or resumes it).
NOT_COMPARED = ("logger", "data_dir", "sweep_name", "record", "progress", "progress_every_s", "limits")

METRIC_COLUMNS = ["interval", "updates", "train_loss", "train_top1", "seen_train_loss",
                  "test_loss", "test_top1", "seconds", "train_seconds", "extra_forward_passes"]
TRACE_COLUMNS = ["update", "round", "batch", "loss", "kept"]
BATCH_ACCURACY_COLUMNS = ["split", "evaluation", "batch", "samples", "top1"]
ROUND_LOSS_COLUMNS = ["round", "updates", "k", "fresh_mean", "chosen_fresh_mean", "fresh_sd", "random_sd",
                      "stored_mean", "chosen_stored_mean", "fresh_overlap", "chosen"]
RECORD_FILES = ("run.json", "metrics.csv", "trace.csv", "round_losses.csv", "batch_accuracy.csv", "checkpoint.pt",
                "job.json")


@dataclass
class RunHeader:
    """run.json, field by field, in the order written."""

    status: str  # one of STATUSES
    error: str | None  # why a run diverged or failed
    run_id: str  # kept across resumes; also the W&B run id
    run_name: str
    sweep: str
    model: str
    dataset: str
    method: str  # the policy's name: standard for any batch-choosing method at delta = 1.0
    delta: float
    seed: int
    fidelity: str  # the protocol: paper_code or clean
    num_batches: int  # N
    k: int  # batches per round after round 0 (N for the methods that train every batch)
    epochs: int  # E
    update_budget: int  # N x E
    batch_size: int
    image_size: int
    num_train: int
    num_test: int
    num_classes: int
    channels: int
    device: str
    threads: int  # torch's CPU threads (the CPU's float reduction order depends on it)
    cpu: str
    precision: str  # fp32 | bf16
    matmul_allow_tf32: bool | None  # as set for the run; null on the CPU
    cudnn_allow_tf32: bool | None
    versions: dict
    git_commit: str | None  # with -dirty when the tree had uncommitted changes
    started_at: str
    finished_at: str | None
    resumed_from: list = field(default_factory=list)  # the update count at each resume
    config: dict = field(default_factory=dict)  # the resolved Hydra config


RUN_FIELDS = tuple(f.name for f in fields(RunHeader))
# What a table needs to know of a run beyond its config and rows (analysis/loading.py).
IDENTITY_FIELDS = ("run_id", "run_name", "sweep", "dataset", "model", "method", "delta", "seed", "fidelity",
                   "epochs", "batch_size", "image_size", "num_classes", "channels", "num_batches", "status",
                   "error", "finished_at")
# Kept in the W&B summary, so `make tables SOURCE=wandb` reads the same identity as the local record.
WANDB_SUMMARY_FIELDS = ("method", "num_batches", "k", "num_classes", "channels", "update_budget")


def run_config(cfg, resolve: bool = True) -> dict:
    """A composed config as plain data, without its hydra node: what run.json's `config` holds
    (Hydra's job config, or the sweep config a launcher loads for a job, which still has `hydra`)."""
    from omegaconf import OmegaConf

    return {key: OmegaConf.to_container(cfg[key], resolve=resolve) if OmegaConf.is_config(cfg[key]) else cfg[key]
            for key in cfg if key != "hydra"}


def comparable(config: dict) -> dict:
    """The part of a resolved config that decides what a run computes. The method's name tags are
    left out: they are derived from its other keys (and older records carry a helper key, tag_True)."""
    kept = {key: value for key, value in config.items() if key not in NOT_COMPARED and key != "hydra"}
    if isinstance(kept.get("method"), dict):
        kept["method"] = {key: value for key, value in kept["method"].items() if not key.startswith("tag")}
    return _without_nulls(kept)


def _without_nulls(node):
    """A null option means "as before" (say dataset.subset: null, all of the split), so a record made
    before such an option existed compares equal to a run that leaves it null."""
    if isinstance(node, dict):
        return {key: _without_nulls(value) for key, value in node.items() if value is not None}
    return node
