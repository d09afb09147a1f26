"""The run record on disk, the source of truth for every run: written atomically, read back with checks.

What each file holds is defined in record_schema.py. A reader never sees a half-written file: each
write goes to a temporary file that replaces the old one in a single rename. A run directory has one
writer at a time (hold_run_dir).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import logging
import os
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from hardsamples import provenance
from hardsamples.errors import ConfigError
from hardsamples.record_schema import (
    BATCH_ACCURACY_COLUMNS,
    METRIC_COLUMNS,
    RECORD_FILES,
    STATUSES,
    OVER,
    ROUND_LOSS_COLUMNS,
    TRACE_COLUMNS,
    comparable,
)



def current_umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, for a moment, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes) -> None:
    check_held(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600: a record is as readable as any file
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


def remove_temporary_files(run_dir: Path) -> list[Path]:
    """The .<record>.<random> files a process killed during write_atomic leaves behind (a checkpoint's
    can be hundreds of MB). Only for a directory this process holds: no write of its own is under way."""
    removed = []
    for name in RECORD_FILES:
        for tmp in Path(run_dir).glob(f".{name}.*"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


LOCK_NAME = ".lock"
_held: dict[Path, int] = {}  # run directories this process holds, with how many holds are open
_lock_ids: dict[Path, tuple[int, int]] = {}  # each held directory's lock file (device, inode), to re-check the hold
_run_logs: dict[Path, logging.Handler] = {}  # the log file a held run writes (start_run_files), closed on release


class LostHold(ConfigError):
    """The held run directory was deleted or replaced (its lock file is gone or another): writing there now
    could replace another run's record, so the run stops without writing."""


def check_held(directory: Path) -> None:
    """Before every write into a directory this process holds: its lock file must still be the one held. A
    directory deleted while its run trained (`make clean` during a sweep) and made again by another run holds
    another lock file; writing on would silently replace that run's record."""
    key = Path(directory).resolve()
    held = _lock_ids.get(key)
    if held is None:
        return
    try:
        stat = os.stat(key / LOCK_NAME)
        now = (stat.st_dev, stat.st_ino)
    except OSError:
        now = None
    if now != held:
        raise LostHold(f"{directory} was deleted or replaced while this run held it (its lock file is gone): this"
                       " run stops without writing there; run it again to train it afresh")


def check_not_a_file(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"the run directory {run_dir} is a file: delete or move that file, or pass another"
                          " run_name= / sweep_name=")


@contextlib.contextmanager
def hold_run_dir(run_dir: Path) -> Iterator[bool]:
    """Be the only writer of run_dir for the duration: an flock on run_dir/.lock, released when the
    process ends, however it ends. Yields True when held, False when the directory cannot be written
    (a read-only results directory: the caller may only read, e.g. to skip a finished run).

    Re-entrant within a process (a sweep job holds the directory around the run that holds it again).
    A directory some other process holds raises ConfigError naming that process.
    """
    run_dir = Path(run_dir)
    key = run_dir.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield True
        finally:
            _held[key] -= 1
        return
    check_not_a_file(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / LOCK_NAME, "a+")
    except IsADirectoryError:
        raise ConfigError(f"{run_dir / LOCK_NAME} is a directory, where the run keeps its lock file: delete or move"
                          " it") from None
    except (NotADirectoryError, FileExistsError) as err:
        raise ConfigError(f"the run directory {run_dir} cannot be made ({err.strerror}: {err.filename}): delete"
                          " or move that file, or pass another run_name= / sweep_name=") from None
    except OSError as err:
        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        yield False  # read-only: nothing may be written here
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise ConfigError(f"{run_dir} is in use by another run (process {holder}): wait for it to end, or stop"
                          " that process and run again (it resumes)") from None
    try:
        check_record_paths(run_dir)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.uname().nodename}:{os.getpid()}\n")
        handle.flush()
        stat = os.fstat(handle.fileno())
        _held[key], _lock_ids[key] = 1, (stat.st_dev, stat.st_ino)
        yield True
    finally:
        _held.pop(key, None)
        _lock_ids.pop(key, None)
        if (log_file := _run_logs.pop(key, None)) is not None:
            logging.getLogger().removeHandler(log_file)
            log_file.close()
        handle.close()  # releases the flock


def check_record_paths(run_dir: Path) -> None:
    """Each file the run writes must be a file or absent, and .hydra a folder or absent: refused in one line
    before anything is written, rather than a traceback at the first write."""
    for name in (*RECORD_FILES, LOG_NAME):
        if (run_dir / name).is_dir():
            raise ConfigError(f"{run_dir / name} is a directory, where the run writes its {name}: delete or move"
                              " it, or pass another run_name= / sweep_name=")
    if (run_dir / HYDRA_DIR).exists() and not (run_dir / HYDRA_DIR).is_dir():
        raise ConfigError(f"{run_dir / HYDRA_DIR} is a file, where the run writes its Hydra config folder: delete"
                          " or move it, or pass another run_name= / sweep_name=")


LOG_NAME = "train.log"  # Hydra's job log, <job name>.log (conf/config.yaml: hydra.job_logging.handlers.file)
HYDRA_DIR = ".hydra"


def start_run_files(run_dir: Path, cfg) -> None:
    """What Hydra would have written into the run directory before any check (conf/config.yaml turns that
    off): .hydra/ (the run's config, Hydra's config, the overrides) and the job's log file, written now that
    this process holds the directory and the run will train. The log file closes when the hold ends."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return  # called outside a Hydra app (tests, the API): nothing of Hydra's to write
    key, hydra = Path(run_dir).resolve(), HydraConfig.get()
    for name, node in (("config.yaml", cfg), ("hydra.yaml", {"hydra": hydra}),
                       ("overrides.yaml", hydra.overrides.task)):
        check_held(run_dir)
        write_atomic(Path(run_dir) / HYDRA_DIR / name, OmegaConf.to_yaml(node).encode())
    spec = OmegaConf.select(hydra, "job_logging.handlers.file")
    if spec is None or key in _run_logs:
        return
    log_file = logging.FileHandler(str(spec.filename), encoding="utf-8")
    log_file.setFormatter(logging.Formatter(OmegaConf.select(hydra, f"job_logging.formatters.{spec.formatter}.format")))
    logging.getLogger().addHandler(log_file)
    _run_logs[key] = log_file


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
        write_json(self.run_json, self.header)

    def add_interval(self, row: dict, trace_rows: list[dict] | None = None,
                     round_rows: list[dict] | None = None) -> None:
        """Append an interval's row, its updates to trace.csv when the run records a trace, and its
        probed round to round_losses.csv when the run probes (record.round_losses)."""
        self.metrics.append(row)
        write_csv(self.directory / "metrics.csv", METRIC_COLUMNS, self.metrics)
        if trace_rows is not None:
            self.trace.extend(trace_rows)
            write_csv(self.directory / "trace.csv", TRACE_COLUMNS, self.trace)
        if round_rows is not None:
            self.round_losses.extend(round_rows)
            write_csv(self.directory / "round_losses.csv", ROUND_LOSS_COLUMNS, self.round_losses)

    def write_batch_accuracy(self, rows: list[dict]) -> None:
        write_csv(self.directory / "batch_accuracy.csv", BATCH_ACCURACY_COLUMNS, rows)

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
        record = read_json(path)
    except (OSError, ValueError) as err:  # ValueError: not JSON, or not text
        problem = "it is empty" if is_empty(path) else f"{type(err).__name__}: {err}".replace("\n", " ")
        raise ConfigError(f"{path} cannot be read ({problem}): {fix}") from None
    if not isinstance(record, dict) or record.get("status") not in STATUSES \
            or not isinstance(record.get("config"), dict):
        raise ConfigError(f"{path} cannot be used (not a run record: no status and config): {fix}")
    return record


def previous_run(run_dir: Path, config: dict) -> dict | None:
    """The record already in run_dir, if any; refuses one made with a different (resolved) config."""
    old = read_record(run_dir)
    if old is not None and comparable(old["config"]) != comparable(config):
        raise ConfigError(f"{run_dir} holds a run with a different config: pass run_name=<new name>"
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
