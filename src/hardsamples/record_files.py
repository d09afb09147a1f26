"""The run record's files, defined and handled once: what each holds, the rows a run writes, the W&B
name of each metric, and the one way each is written and read back. No torch here, so `make tables`
loads without it (the torch side of the record, its checkpoints, is records.py).

  run.json            RunHeader below: identity, sizes, versions, status, the resolved config
  metrics.csv         METRIC_COLUMNS, one row per interval (N updates): metrics_row
  trace.csv           TRACE_COLUMNS, one row per update (record.trace=true): trace_rows
  round_losses.csv    ROUND_LOSS_COLUMNS, one row per interval's first round (record.round_losses=true:
                      probe.py, the mechanism check)
  batch_accuracy.csv  BATCH_ACCURACY_COLUMNS, the final model's top-1 per evaluation batch: batch_accuracy_rows
  checkpoint.pt       everything needed to resume (records.save_checkpoint)
  job.json            a sweep job's note of its attempt (sweep.job: new_note, JobNote)

A reader never sees a half-written file: each write goes to a temporary file that replaces the old one
in a single rename. A run directory has one writer at a time (hold_run_dir), and every write into a
held directory first checks that the directory is still the one held (check_held).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hardsamples.errors import ConfigError

# interrupted: stopped from outside (a signal, Ctrl-C, a pre-emption) and resumed when run again.
STATUSES = ("running", "finished", "diverged", "failed", "interrupted")
OVER = ("finished", "diverged")  # a run with one of these statuses is skipped when run again
# Config keys that change where a run is logged or read from, never what it computes: two runs that
# differ only here are the same run (a rerun skips or resumes it).
NOT_COMPARED = ("logger", "data_dir", "sweep_name", "record", "progress", "progress_every_s", "limits")


# --- metrics.csv ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    """One metrics.csv column: the key the W&B mirror logs it under, and the values a run writes there
    (a record outside them is damaged: the tables list it as unreadable); no range for the counters."""

    wandb_key: str
    low: float | None = None
    high: float = math.inf


# In the order of the columns. `interval` is the x axis of every W&B chart.
METRICS = {
    "interval": Metric("interval"),
    "updates": Metric("train/updates"),
    "train_loss": Metric("train/loss", 0),
    "train_top1": Metric("train/top1", 0, 100),
    "seen_train_loss": Metric("train/seen_loss", 0),
    "test_loss": Metric("test/loss", 0),
    "test_top1": Metric("test/top1", 0, 100),
    "seconds": Metric("time/seconds", 0),
    "train_seconds": Metric("time/train_seconds", 0),
    "extra_forward_passes": Metric("train/extra_forward_passes", 0),
}
METRIC_COLUMNS = list(METRICS)
# The columns every interval's row holds a value in unless it diverged: the tables need them.
REQUIRED_METRICS = ["interval", "updates", "train_loss", "train_top1", "test_loss", "test_top1"]
METRIC_WANDB_KEYS = {column: metric.wandb_key for column, metric in METRICS.items()}
METRIC_RANGES = {column: (metric.low, metric.high) for column, metric in METRICS.items() if metric.low is not None}


def metrics_row(interval: int, updates: int, seen_train_loss: float, train, test, seconds: float,
                train_seconds: float, extra_forward_passes: int) -> dict:
    """An interval's metrics.csv row. train, test: the interval's evaluations (a .loss and a .top1 each),
    None when the interval diverged before its evaluation."""
    return {"interval": interval, "updates": updates,
            "train_loss": train.loss if train else None, "train_top1": train.top1 if train else None,
            "seen_train_loss": seen_train_loss,
            "test_loss": test.loss if test else None, "test_top1": test.top1 if test else None,
            "seconds": round(seconds, 3), "train_seconds": round(train_seconds, 6),
            "extra_forward_passes": extra_forward_passes}


# --- the other files -----------------------------------------------------------------------------

TRACE_COLUMNS = ["update", "round", "batch", "loss", "kept"]
BATCH_ACCURACY_COLUMNS = ["split", "evaluation", "batch", "samples", "top1"]
ROUND_LOSS_COLUMNS = ["round", "updates", "k", "fresh_mean", "chosen_fresh_mean", "fresh_sd", "random_sd",
                      "stored_mean", "chosen_stored_mean", "fresh_overlap", "chosen"]
CSV_COLUMNS = {"metrics.csv": METRIC_COLUMNS, "trace.csv": TRACE_COLUMNS, "round_losses.csv": ROUND_LOSS_COLUMNS,
               "batch_accuracy.csv": BATCH_ACCURACY_COLUMNS}
RECORD_FILES = ("run.json", "metrics.csv", "trace.csv", "round_losses.csv", "batch_accuracy.csv", "checkpoint.pt",
                "job.json")


def trace_rows(segments) -> list[dict]:
    """trace.csv's rows of an interval, one per update: segments are the loop's (loop.Segment: a round's
    run of updates, its first update, round index, batch ids, losses and samples kept)."""
    rows = []
    for seg in segments:
        ids, losses = seg.batch_ids.tolist(), seg.losses.tolist()
        for j, (batch, loss, kept) in enumerate(zip(ids, losses, seg.kept)):
            rows.append({"update": seg.first_update + j + 1, "round": seg.round_index,
                         "batch": batch, "loss": loss, "kept": kept})
    return rows


def batch_accuracy_rows(evaluation: str, train, test) -> list[dict]:
    """batch_accuracy.csv's rows of one kind of evaluation ("interval" or "final"): train, test each give
    .batch_sizes and .batch_top1, one per evaluation batch."""
    return [{"split": split, "evaluation": evaluation, "batch": i, "samples": n, "top1": acc}
            for split, result in (("train", train), ("test", test))
            for i, (n, acc) in enumerate(zip(result.batch_sizes, result.batch_top1))]


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


# What a table needs to know of a run beyond its config and rows (analysis/loading.py).
IDENTITY_FIELDS = ("run_id", "run_name", "sweep", "dataset", "model", "method", "delta", "seed", "fidelity",
                   "epochs", "batch_size", "image_size", "num_classes", "channels", "num_batches", "status",
                   "error", "finished_at")
# Kept in the W&B summary, so `make tables SOURCE=wandb` reads the same identity as the local record.
WANDB_SUMMARY_FIELDS = ("method", "num_batches", "k", "num_classes", "channels", "update_budget")


def recorded_config(cfg, resolve: bool = True) -> dict:
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


def flat_config(config: dict) -> dict:
    """Every leaf of a config's comparable part by its dotted key (lists and empty nodes kept whole)."""
    flat = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(comparable(config), "")
    return flat


def config_differences(old: dict, new: dict, shown: int = 3) -> str:
    """The dotted keys where two configs' comparable parts differ, as `key: <old> there, <new> here`, the
    first `shown` of them and a count of the rest: what a refused rerun changed."""
    there, here = flat_config(old), flat_config(new)
    keys = sorted(key for key in there.keys() | here.keys() if there.get(key, "unset") != here.get(key, "unset"))
    text = "; ".join(f"{key}: {there.get(key, 'unset')} there, {here.get(key, 'unset')} here" for key in keys[:shown])
    return text + (f"; and {len(keys) - shown} more" if len(keys) > shown else "")


def _without_nulls(node):
    """A null option means "as before" (say dataset.subset: null, all of the split), so a record made
    before such an option existed compares equal to a run that leaves it null."""
    if isinstance(node, dict):
        return {key: _without_nulls(value) for key, value in node.items() if value is not None}
    return node


# --- writing -------------------------------------------------------------------------------------

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
    """run.json, job.json and the job notes beside it."""
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue().encode())


def write_rows(run_dir: Path, name: str, rows: list[dict]) -> None:
    """One of the record's CSV files (CSV_COLUMNS), rewritten whole with these rows."""
    write_csv(Path(run_dir) / name, CSV_COLUMNS[name], rows)


# --- reading -------------------------------------------------------------------------------------

class UnusableFile(ValueError):
    """A record file that is there but cannot be used. `problem` says what is wrong with it; `damaged`:
    its bytes cannot be read as what it should be (else it reads, but is no record of this code)."""

    def __init__(self, problem: str, damaged: bool):
        super().__init__(problem)
        self.problem, self.damaged = problem, damaged


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def read_run_json(path: Path) -> dict:
    """run.json: an object with a status. UnusableFile when it cannot be read (missing, damaged) or holds
    something else; each reader words what to do about it (records.read_record for a run about to start,
    analysis/loading.py for a table)."""
    try:
        header = read_json(path)
    except (OSError, ValueError) as err:  # ValueError: not JSON, or not text
        raise UnusableFile(f"{type(err).__name__}: {err}", damaged=True) from err
    if not isinstance(header, dict) or "status" not in header:
        raise UnusableFile("not a run record", damaged=False)
    return header


def read_rows(run_dir: Path, name: str) -> list[dict]:
    """One of the record's CSV files as its rows, each a dict of text by the file's own header; blank lines
    left out. FileNotFoundError when there is none; OSError or UnusableFile when it cannot be read."""
    path = Path(run_dir) / name
    try:
        with open(path, newline="") as f:
            return [row for row in csv.DictReader(f) if any(str(value or "").strip() for value in row.values())]
    except (csv.Error, UnicodeDecodeError) as err:
        raise UnusableFile(f"{type(err).__name__}: {err}", damaged=True) from err


def read_table(path: Path, required: list[str]):
    """One of the record's CSV files as a pandas DataFrame, for the tables: refused (UnusableFile) unless every
    row has the header's number of fields (pandas would fill a short row with NaN, or take an extra first
    field as the index, and shift the values under the wrong columns) and the required columns are there."""
    import pandas as pd  # the tables' side only: a training run never loads it for this

    def unusable(err: Exception) -> UnusableFile:
        return UnusableFile(f"{path.name}: {type(err).__name__}: {err}".replace("\n", " "), damaged=True)

    try:
        text = Path(path).read_text()
        lines = [row for row in csv.reader(io.StringIO(text)) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise unusable(err) from err
    short = next((i for i, row in enumerate(lines[1:], 2) if len(row) != len(lines[0])), None)
    if short is not None:
        raise UnusableFile(f"{path.name}: row {short} has {len(lines[short - 1])} fields for the header's"
                           f" {len(lines[0])} (a row cut or shifted)", damaged=True)
    try:
        table = pd.read_csv(io.StringIO(text))
    except ValueError as err:  # pandas' EmptyDataError and ParserError among them
        raise unusable(err) from err
    missing = [c for c in required if c not in table]
    if missing:
        raise UnusableFile(f"{path.name}: missing column(s) {', '.join(missing)}", damaged=False)
    return table


def read_job_note(path: Path) -> dict | None:
    """A sweep job's note (job.json, or one beside it), or None when there is none or it cannot be read
    (a summary reports what it can; a new note replaces it)."""
    try:
        note = read_json(path)
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) else None


# --- one writer per run directory ----------------------------------------------------------------

LOCK_NAME = ".lock"
LOG_NAME = "train.log"  # Hydra's job log, <job name>.log (conf/config.yaml: hydra.job_logging.handlers.file)
HYDRA_DIR = ".hydra"
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
    handle = open_lock_file(run_dir)
    if handle is None:
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


def open_lock_file(run_dir: Path):
    """run_dir/.lock opened for the hold, the directory made first; None where it cannot be written."""
    check_not_a_file(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        return open(run_dir / LOCK_NAME, "a+")
    except IsADirectoryError:
        raise ConfigError(f"{run_dir / LOCK_NAME} is a directory, where the run keeps its lock file: delete or move"
                          " it") from None
    except (NotADirectoryError, FileExistsError) as err:
        raise ConfigError(f"the run directory {run_dir} cannot be made ({err.strerror}: {err.filename}): delete"
                          " or move that file, or pass another run_name= / sweep_name=") from None
    except OSError as err:
        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        return None


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


def remove_temporary_files(run_dir: Path) -> list[Path]:
    """The .<record>.<random> files a process killed during write_atomic leaves behind (a checkpoint's
    can be hundreds of MB). Only for a directory this process holds: no write of its own is under way."""
    removed = []
    for name in RECORD_FILES:
        for tmp in Path(run_dir).glob(f".{name}.*"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


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
