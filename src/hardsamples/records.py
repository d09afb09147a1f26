"""The run record: the source of truth for every run, written atomically into its output directory.

  run.json            resolved config, identity (model, dataset, method, delta, seed, N, k, budget),
                      versions, git commit, status (running / finished / diverged / failed) and error
  metrics.csv         one row per interval (METRIC_COLUMNS)
  trace.csv           one row per update when record.trace=true (TRACE_COLUMNS)
  batch_accuracy.csv  the final model's top-1 on each evaluation batch: evaluation=interval as the
                      intervals evaluate, evaluation=final as the authors' metrics.py (the paper's +/-)
  checkpoint.pt       everything needed to resume (model, optimizer, policy, RNG, rows so far)

A reader never sees a half-written file: each write goes to a temporary file that replaces the old
one in a single rename.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import torch

METRIC_COLUMNS = ["interval", "updates", "train_loss", "train_top1", "seen_train_loss",
                  "test_loss", "test_top1", "seconds", "train_seconds", "extra_forward_passes"]
TRACE_COLUMNS = ["update", "round", "batch", "loss", "kept"]
BATCH_ACCURACY_COLUMNS = ["split", "evaluation", "batch", "samples", "top1"]
STATUSES = ("running", "finished", "diverged", "failed")


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: dict) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue().encode())


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def versions() -> dict:
    import hydra
    import timm
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__,
            "hydra": hydra.__version__}


def git_commit() -> str | None:
    """The commit of the code that ran, with '-dirty' when the tree had uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


class RunRecord:
    """One run's directory. Rows are kept in memory and each file rewritten whole, atomically."""

    def __init__(self, directory: Path, header: dict):
        self.directory = Path(directory)
        self.header = header
        self.metrics: list[dict] = []
        self.trace: list[dict] = []

    @property
    def run_json(self) -> Path:
        return self.directory / "run.json"

    @property
    def checkpoint_path(self) -> Path:
        return self.directory / "checkpoint.pt"

    def set_status(self, status: str, **fields) -> None:
        assert status in STATUSES, status
        self.header.update(status=status, **fields)
        write_json(self.run_json, self.header)

    def add_interval(self, row: dict, trace_rows: list[dict] | None = None) -> None:
        """Append an interval's row, and its updates to trace.csv when the run records a trace."""
        self.metrics.append(row)
        write_csv(self.directory / "metrics.csv", METRIC_COLUMNS, self.metrics)
        if trace_rows is not None:
            self.trace.extend(trace_rows)
            write_csv(self.directory / "trace.csv", TRACE_COLUMNS, self.trace)

    def write_batch_accuracy(self, rows: list[dict]) -> None:
        write_csv(self.directory / "batch_accuracy.csv", BATCH_ACCURACY_COLUMNS, rows)
