"""The torch side of the run record (its files are record_files.py): checkpoints, the versions and machine
run.json names, a run's rows kept for its checkpoint (RunRecord), and reading a record back to decide
whether a run is skipped, resumed or refused.
"""

from __future__ import annotations

import io
import os
import platform
from pathlib import Path

import torch

from hardsamples import provenance, record_files
from hardsamples.errors import ConfigError
from hardsamples.record_files import OVER, STATUSES, UnusableFile, comparable


def save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    record_files.write_atomic(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def versions() -> dict:
    import hydra
    import timm
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__,
            "hydra": hydra.__version__, "hardsamples": provenance.package_version()}


def cpu_name() -> str:
    """The CPU model, as /proc/cpuinfo names it where there is one, with its core count."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} cores)"


def git_commit() -> str | None:
    """The commit of the code that ran (provenance.source_commit: git, else HARDSAMPLES_SOURCE_COMMIT,
    else the installed wheel's metadata), with '-dirty' when a checkout had uncommitted changes."""
    return provenance.source_commit()


class RunRecord:
    """One run's directory. Rows are kept in memory and each file rewritten whole, atomically."""

    def __init__(self, directory: Path, header: dict):
        self.directory = Path(directory)
        self.header = header
        self.metrics: list[dict] = []
        self.trace: list[dict] = []
        self.round_losses: list[dict] = []

    @property
    def run_json(self) -> Path:
        return self.directory / "run.json"

    @property
    def checkpoint_path(self) -> Path:
        return self.directory / "checkpoint.pt"

    def set_status(self, status: str, **fields) -> None:
        assert status in STATUSES, status
        self.header.update(status=status, **fields)
        record_files.write_json(self.run_json, self.header)

    def add_interval(self, row: dict, trace_rows: list[dict] | None = None,
                     round_rows: list[dict] | None = None) -> None:
        """Append an interval's row, its updates to trace.csv when the run records a trace, and its
        probed round to round_losses.csv when the run probes (record.round_losses)."""
        self.metrics.append(row)
        record_files.write_rows(self.directory, "metrics.csv", self.metrics)
        if trace_rows is not None:
            self.trace.extend(trace_rows)
            record_files.write_rows(self.directory, "trace.csv", self.trace)
        if round_rows is not None:
            self.round_losses.extend(round_rows)
            record_files.write_rows(self.directory, "round_losses.csv", self.round_losses)

    def write_batch_accuracy(self, rows: list[dict]) -> None:
        record_files.write_rows(self.directory, "batch_accuracy.csv", rows)

    def state_dict(self) -> dict:
        """The rows written so far: a resumed run rewrites its files from these."""
        return {"metrics": self.metrics, "trace": self.trace, "round_losses": self.round_losses}

    def load_state_dict(self, state: dict) -> None:
        self.metrics, self.trace = list(state["metrics"]), list(state["trace"])
        self.round_losses = list(state.get("round_losses", []))  # absent from checkpoints made before the probe

    def save_checkpoint(self, loop_state: dict, seconds: float) -> None:
        """checkpoint.pt: the loop's state, the rows so far, the clock and this run's id (CHECKPOINT_KEYS)."""
        save_checkpoint(self.checkpoint_path, {"loop": loop_state, "record": self.state_dict(), "seconds": seconds,
                                               "run_id": self.header["run_id"]})


def is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:  # gone since it failed to read
        return False


def read_record(run_dir: Path) -> dict | None:
    """run.json, or None when there is none; one that cannot be read or is no run record is refused
    with a line naming what to delete (a kill mid-write never leaves one: this is outside damage)."""
    path = Path(run_dir) / "run.json"
    if not path.exists():
        return None
    fix = f"delete the directory {run_dir} to start that run afresh"
    try:
        record = record_files.read_run_json(path)
    except UnusableFile as err:
        if err.damaged:
            problem = "it is empty" if is_empty(path) else err.problem.replace("\n", " ")
            raise ConfigError(f"{path} cannot be read ({problem}): {fix}") from None
        record = None  # no run record: refused below, with one whose status or config is not this code's
    if not isinstance(record, dict) or record.get("status") not in STATUSES \
            or not isinstance(record.get("config"), dict):
        raise ConfigError(f"{path} cannot be used (not a run record: no status and config): {fix}")
    return record


def previous_run(run_dir: Path, config: dict) -> dict | None:
    """The record already in run_dir, if any; refuses one made with a different (resolved) config."""
    old = read_record(run_dir)
    if old is not None and comparable(old["config"]) != comparable(config):
        raise ConfigError(f"{run_dir} holds a run with a different config"
                          f" ({record_files.config_differences(old['config'], config)}): pass run_name=<new name>"
                          " or sweep_name=<new sweep>, or delete that directory")
    return old


def is_over(run_dir: Path, old: dict | None) -> bool:
    """Whether the run recorded in run_dir (previous_run's record) is over, finished or diverged, with
    all its rows: a rerun skips it. One over but missing rows is refused with one line (ConfigError)."""
    if old is None or old["status"] not in OVER:
        return False
    check_complete(run_dir, old)
    return True


def check_complete(run_dir: Path, old: dict) -> None:
    """A run recorded as over must still have its rows; otherwise it is refused, never skipped as done."""
    fix = f"delete the directory {run_dir} to train that run again"
    try:
        rows = len(record_files.read_rows(run_dir, "metrics.csv"))
    except FileNotFoundError:
        raise ConfigError(f"{run_dir} is {old['status']} but its metrics.csv is missing: {fix}") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{run_dir} is {old['status']} but its metrics.csv cannot be read ({err}): {fix}") from None
    if rows == 0:
        raise ConfigError(f"{run_dir} is {old['status']} but its metrics.csv has no rows: {fix}")
    if old["status"] == "finished":
        expected = old.get("epochs")
        if isinstance(expected, int) and rows != expected:
            raise ConfigError(f"{run_dir} is finished but its metrics.csv has {rows} of {expected} rows: {fix}")
        if not (Path(run_dir) / "batch_accuracy.csv").exists():
            raise ConfigError(f"{run_dir} is finished but its batch_accuracy.csv is missing: {fix}")


CHECKPOINT_KEYS = ("loop", "record", "seconds", "run_id")  # RunRecord.save_checkpoint


def start_over(path: Path) -> str:
    """The fix for a checkpoint that cannot be used."""
    return f"delete {path} and run again (the run then starts over from update 0)"


def load_run_checkpoint(path: Path, run_id: str) -> dict:
    """checkpoint.pt of this run, or a one-line refusal naming the file to delete."""
    fix = start_over(path)
    try:
        saved = load_checkpoint(path)
    except Exception as err:  # torch raises many kinds for a truncated or foreign file
        problem = "it is empty" if is_empty(path) else type(err).__name__
        raise ConfigError(f"{path} cannot be read ({problem}): {fix}") from None
    if not isinstance(saved, dict) or any(key not in saved for key in CHECKPOINT_KEYS):
        raise ConfigError(f"{path} cannot be used (not a checkpoint of this code): {fix}")
    if saved["run_id"] != run_id:
        raise ConfigError(f"{path} belongs to run {saved['run_id']}, not to this run {run_id}: {fix}")
    return saved
