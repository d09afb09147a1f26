"""Run records -> one tidy pandas table: one row per (run, interval), the run's identity on every row.

Two sources give the same table, so dashboards and tables agree:
  load_records(dir)    every run.json under dir, with its metrics.csv and batch_accuracy.csv
  load_wandb(...)      the W&B mirror of the same runs (wandb.Api), config + logged history

Every run is kept whatever its status (running, finished, diverged, failed, interrupted, unreadable); a run with
no interval yet still has one row, with empty metrics. Deciding what enters a mean is the tables'
job, and they list what they leave out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from hardsamples import cells
from hardsamples.errors import ConfigError
from hardsamples.record_files import (IDENTITY_FIELDS, METRIC_COLUMNS, METRIC_RANGES, METRIC_WANDB_KEYS,
                                      REQUIRED_METRICS, STATUSES, UnusableFile, read_json, read_run_json,
                                      read_table)
from hardsamples.analysis.inference import t_interval

# run.json's identity fields (record_files), with where the row came from after the run's id and name.
IDENTITY = [*IDENTITY_FIELDS[:2], "run_dir", "source", *IDENTITY_FIELDS[2:]]
BATCH_STATS = ["train_top1_batch_mean", "train_top1_batch_ci95", "train_top1_batches",
               "test_top1_batch_mean", "test_top1_batch_ci95", "test_top1_batches"]
BATCH_INFO = ["batch_evaluation"]  # which rows of batch_accuracy.csv gave the paper's kind of interval
COLUMNS = IDENTITY + BATCH_STATS + BATCH_INFO + ["config"] + METRIC_COLUMNS
# What makes two runs measure the same thing besides model, dataset, method and delta: records that
# differ here are never averaged together, and every table names them (a cell's fields: cells.py).
SETUP = cells.SETUP


class NoRecords(ConfigError):
    """Nothing to tabulate: the message says what was expected where."""


def load_records(runs_dir, confidence: float = 0.95) -> pd.DataFrame:
    """Every run under runs_dir: each run.json, and each sweep job that failed before writing one.

    A run whose files cannot be read is kept with status `unreadable` (or `incomplete`, for a finished
    run whose metrics.csv lacks intervals) and the reason in `error`: the tables list it and never
    average it, and one bad record never stops the others from being tabulated."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise NoRecords(f"no run records: expected a directory of runs with run.json files at {runs_dir}, which does"
                        " not exist (train some with `make sweep`, or pass RUNS=<dir>)")
    paths = sorted(runs_dir.rglob("run.json"))
    orphans = sorted(p for p in runs_dir.rglob("job.json") if not (p.parent / "run.json").exists())
    if not paths and not orphans:
        raise NoRecords(f"no run records: expected run.json files (one per run, from `make run`/`make sweep`)"
                        f" under {runs_dir}, found none")
    return _frame([_read_run(p.parent, confidence) for p in paths] + [_job_without_run(p) for p in orphans])


def _job_without_run(job_file: Path) -> list[dict]:
    """A sweep job that ended before its run wrote run.json (e.g. refused config, killed at start)."""
    try:
        note = read_json(job_file)
        error = note.get("error") if isinstance(note, dict) else None
    except (OSError, ValueError) as err:
        error = f"job.json: {type(err).__name__}: {err}"
    return [{"run_dir": str(job_file.parent), "run_name": job_file.parent.name, "source": "records",
             "status": "failed", "error": error or "the job ended before writing run.json"}]


class Unreadable(Exception):
    """A record file that cannot be used: the message names the file and what is wrong."""


def _read_run(run_dir: Path, confidence: float) -> list[dict]:
    try:
        header = _read_header(run_dir / "run.json")
    except Unreadable as err:
        return [{"run_dir": str(run_dir), "source": "records", "status": "unreadable", "error": str(err)}]
    config = header["config"]
    run = {key: header.get(key) for key in IDENTITY if key in header}
    # channels, like num_classes, is written once the data is read: Table 2 leaves out runs without both.
    run.update(run_dir=str(run_dir), source="records", channels=header.get("channels"), config=config)
    try:
        batch_file = run_dir / "batch_accuracy.csv"
        if batch_file.exists():
            run.update(_batch_stats_of(batch_file, confidence))
        metrics_file = run_dir / "metrics.csv"
        metrics = (_read_csv(metrics_file, REQUIRED_METRICS) if metrics_file.exists()
                   else pd.DataFrame(columns=METRIC_COLUMNS))
        check_metrics(metrics, header["status"], header["epochs"], "metrics.csv")
    except Unreadable as err:
        return [{**run, "status": "unreadable", "error": str(err)}]
    metrics = metrics[[c for c in METRIC_COLUMNS if c in metrics]]  # an older record lacks some: empty in the table
    if run.get("status") == "finished" and len(metrics) < header["epochs"]:
        run.update(status="incomplete", error=f"finished, but metrics.csv holds {len(metrics)} of"
                                              f" {header.get('epochs')} intervals")
    return _with_rows(run, metrics.to_dict("records"))


def _batch_stats_of(path: Path, confidence: float) -> dict:
    batches = _read_csv(path, ["split", "top1"])
    top1 = pd.to_numeric(batches["top1"], errors="coerce")
    if top1.isna().any() or not top1.between(0, 100).all() or not batches["split"].isin(["train", "test"]).all():
        raise Unreadable(f"{path.name}: a row is not a split (train, test) with a top-1 in [0, 100]")
    batches["top1"] = top1
    return batch_stats(batches, confidence)


def _read_header(path: Path) -> dict:
    try:
        header = read_run_json(path)
    except UnusableFile as err:
        raise Unreadable(f"run.json: {err.problem}" if err.damaged
                         else "run.json: not a run record (expected an object with a status)") from err
    missing = [key for key in REQUIRED_FIELDS if key not in header]
    if missing:
        raise Unreadable(f"run.json: not a run record of this code (it has no {', '.join(missing)})")
    if (problem := identity_problem(header)) is not None:
        raise Unreadable(f"run.json: {problem}")
    return header


def _read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    """record_files.read_table, its problem as this module's Unreadable (the run is listed, never averaged)."""
    try:
        return read_table(path, required)
    except UnusableFile as err:
        raise Unreadable(err.problem) from err


# --- what a record must hold to be tabulated -----------------------------------------------------------------
# run.json: the fields a table groups and labels by, each of its type and in its range. A foreign run.json, or
# one with a field of the wrong type (seed a dict, epochs a string, config a string), is listed as unreadable.
REQUIRED_FIELDS = ("status", "config", "model", "dataset", "delta", "seed", "epochs", "fidelity", "batch_size",
                   "image_size")
_TEXT, _WHOLE, _REAL = "a string", "a whole number", "a number"
FIELD_RULES = {  # field: (what it must be, a check of its value, may it be null)
    "status": (_TEXT, lambda v: isinstance(v, str) and v in STATUSES, False),
    "config": ("an object", lambda v: isinstance(v, dict), False),
    "model": (_TEXT, lambda v: isinstance(v, str) and v != "", False),
    "dataset": (_TEXT, lambda v: isinstance(v, str) and v != "", False),
    "fidelity": (_TEXT, lambda v: isinstance(v, str) and v != "", False),
    "delta": ("a number in (0, 1]", lambda v: _is_real(v) and 0 < v <= 1, False),
    "seed": (_WHOLE, lambda v: _is_whole(v), False),
    "epochs": ("a whole number >= 1", lambda v: _is_whole(v) and v >= 1, False),
    "batch_size": ("a whole number >= 1", lambda v: _is_whole(v) and v >= 1, False),
    "image_size": ("a whole number >= 1", lambda v: _is_whole(v) and v >= 1, False),
    "method": (_TEXT, lambda v: isinstance(v, str), True),
    "num_batches": ("a whole number >= 1", lambda v: _is_whole(v) and v >= 1, True),
    "num_classes": ("a whole number >= 2", lambda v: _is_whole(v) and v >= 2, True),
    "channels": ("a whole number >= 1", lambda v: _is_whole(v) and v >= 1, True),
    "run_id": (_TEXT, lambda v: isinstance(v, str), True),
    "run_name": (_TEXT, lambda v: isinstance(v, str), True),
    "sweep": (_TEXT, lambda v: isinstance(v, str), True),
    "error": (_TEXT, lambda v: isinstance(v, str), True),
    "finished_at": (_TEXT, lambda v: isinstance(v, str), True),
}


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def identity_problem(run: dict) -> str | None:
    """The first field of a run's identity that is not of its type or in its range, as `field=value is not
    what it must be`; None when all that are there are."""
    for key, (expected, valid, nullable) in FIELD_RULES.items():
        if key not in run or (nullable and run[key] is None):
            continue
        if not valid(run[key]):
            shown = json.dumps(run[key], default=str)
            return f"{key}={shown[:60] + ('...' if len(shown) > 60 else '')} is not {expected}"
    return None


def check_metrics(metrics: pd.DataFrame, status: str, epochs: int, source: str) -> None:
    """Every interval's row once, in order, 1..n with n <= epochs; every value numeric, finite and in its range
    (top-1 in [0, 100], losses >= 0). A diverged run's last row is its divergence: it may hold NaN or nothing.
    Anything else is a damaged record (Unreadable), never averaged."""
    if metrics.empty:
        return
    numeric = {column: pd.to_numeric(metrics[column], errors="coerce") for column in metrics
               if column in METRIC_RANGES or column in ("interval", "updates")}
    intervals = numeric["interval"]
    if intervals.isna().any() or intervals.tolist() != list(range(1, len(metrics) + 1)):
        shown = ", ".join(str(v) for v in metrics["interval"].tolist()[:12])
        raise Unreadable(f"{source}: intervals {shown} are not 1..{len(metrics)} in order (a row duplicated, missing"
                         " or moved)")
    if len(metrics) > epochs:
        raise Unreadable(f"{source}: {len(metrics)} intervals for a run of epochs={epochs}")
    updates = numeric["updates"]
    if updates.isna().any() or not (updates.diff().dropna() > 0).all() or updates.iloc[0] < 1:
        raise Unreadable(f"{source}: updates are not a rising count from 1")
    checked = metrics.index[:-1] if status == "diverged" else metrics.index
    for column, (low, high) in METRIC_RANGES.items():
        if column not in numeric:
            continue
        values, given = numeric[column].loc[checked], metrics[column].loc[checked]
        valid = values.between(low, high) & np.isfinite(values)
        # an optional column may be empty (older records), never text or out of range
        bad = values[~valid & (given.notna() | (column in REQUIRED_METRICS))]
        if len(bad):
            at = int(intervals.loc[bad.index[0]])
            value = metrics[column].loc[bad.index[0]]
            raise Unreadable(f"{source}: {column}={value} at interval {at} of a {status} run is not a finite number"
                             f" in [{low:g}, {high:g}]")


def batch_stats(batches: pd.DataFrame, confidence: float = 0.95) -> dict:
    """The paper's interval: t over the per-batch top-1 of the final model (unweighted, as its
    metrics.py does), one run, n = number of batches; the mean of those batch top-1s beside it.

    Records with an `evaluation` column hold the authors' kind of final evaluation as "final" rows (all
    batches of batch_size, the last partial one its own batch) and use those; older records have only
    the interval evaluation's batches, and say so in batch_evaluation."""
    if "evaluation" in batches and (batches["evaluation"] == "final").any():
        batches, kind = batches[batches["evaluation"] == "final"], "final"
    else:
        kind = "interval (record without final rows)"
    out = {"batch_evaluation": kind}
    for split in ("train", "test"):
        interval = t_interval(batches.loc[batches["split"] == split, "top1"], confidence)
        out.update({f"{split}_top1_batch_mean": interval.mean, f"{split}_top1_batch_ci95": interval.half_width,
                    f"{split}_top1_batches": interval.n})
    return out


def load_wandb(entity: str | None, project: str, group: str | None, api=None) -> pd.DataFrame:
    """The same table from W&B. Per-batch accuracies are not mirrored, so the paper-style interval
    columns stay empty: the local records have them.

    `group` picks the runs of one sweep (config sweep_name; the mirror groups each cell of it on its
    own) or of one W&B group (a cell, WANDB_RUN_GROUP, or the sweep itself for runs mirrored when the
    group was the sweep)."""
    path = f"{entity}/{project}" if entity else project
    filters = {"$or": [{"group": group}, {"config.sweep_name": group}]} if group else None
    try:
        if api is None:
            import wandb

            api = wandb.Api()
        runs = list(api.runs(path, filters=filters))
    except Exception as err:  # the W&B client raises many types; one line is what the user needs
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        raise NoRecords(f"W&B: could not list the runs of {path} (group {group}): {reason}"
                        " (or read the local records: source=records)") from None
    if not runs:
        raise NoRecords(f"no run records: expected W&B runs in {path}" + (f", sweep or group {group}" if group else "")
                        + ", found none")
    return _frame([_wandb_run(run) for run in runs])


WANDB_STATES = {"finished": "finished", "running": "running", "crashed": "failed", "failed": "failed",
                "killed": "failed"}


def _wandb_run(wrun) -> list[dict]:
    """One W&B run as table rows, checked as a local record is; one that is not a run of this code, or is
    damaged, is listed as unreadable."""
    try:
        run, rows = _wandb_run_rows(wrun)
        if (problem := identity_problem(run)) is not None:
            raise Unreadable(f"W&B: {problem}")
        check_metrics(pd.DataFrame(rows), run["status"], run["epochs"], "W&B history")
    except Unreadable as err:
        return [{"run_id": wrun.id, "run_dir": f"wandb:{wrun.id}", "source": "wandb", "status": "unreadable",
                 "error": str(err)}]
    except (KeyError, TypeError, AttributeError, ValueError) as err:  # a W&B run not made by this code
        return [{"run_id": wrun.id, "run_dir": f"wandb:{wrun.id}", "source": "wandb", "status": "unreadable",
                 "error": f"W&B: not a run of this code ({type(err).__name__}: {err})"}]
    return _with_rows(run, rows)


def _wandb_run_rows(wrun) -> tuple[dict, list[dict]]:
    config = dict(wrun.config)
    summary = dict(wrun.summary)
    identity = config.pop("identity", None) or {}  # the mirror's copy of run.json's identity, not Hydra's config
    run = {"run_id": wrun.id, "run_name": config.get("run_name", wrun.name), "run_dir": f"wandb:{wrun.id}",
           "source": "wandb", "sweep": config.get("sweep_name"), "dataset": config["dataset"]["name"],
           "model": config["model"]["name"], "method": summary.get("method"),
           "delta": config["delta"], "seed": config["seed"], "fidelity": config["fidelity"]["name"],
           "epochs": config["epochs"], "batch_size": config["batch_size"], "image_size": config["image_size"],
           "channels": summary.get("channels"), "num_classes": summary.get("num_classes"),
           "num_batches": summary.get("num_batches"),
           "status": summary.get("status") or WANDB_STATES.get(wrun.state, wrun.state), "error": None,
           "finished_at": None, "config": config}
    run.update({key: value for key, value in identity.items() if key in IDENTITY_FIELDS})
    rows = [_metrics_of(logged) for logged in wrun.scan_history()]
    return run, sorted(rows, key=lambda r: r["interval"])


def _metrics_of(logged: dict) -> dict:
    """One W&B history row as a metrics.csv row: the mirror's keys (train/loss, ...), or the flat
    column names runs were mirrored with before, and the interval as W&B's step when not logged."""
    row = {column: logged.get(METRIC_WANDB_KEYS[column], logged.get(column)) for column in METRIC_COLUMNS}
    if row["interval"] is None:
        row["interval"] = logged["_step"]
    return row


def _with_rows(run: dict, rows: list[dict]) -> list[dict]:
    return [{**run, **row} for row in rows] or [dict(run)]


def _frame(runs: list[list[dict]]) -> pd.DataFrame:
    df = pd.DataFrame([row for run in runs for row in run])
    for column in COLUMNS:
        if column not in df:
            df[column] = None
    df = df[COLUMNS]
    numeric = METRIC_COLUMNS + BATCH_STATS + ["delta"]
    df[numeric] = df[numeric].apply(pd.to_numeric, errors="coerce")
    return df


def run_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: identity, the last interval reached with its metrics, and the train-loss curve."""
    ordered = df.sort_values(["run_dir", "interval"])
    runs = ordered.groupby("run_dir", sort=True).head(1).set_index("run_dir")[
        [c for c in IDENTITY if c != "run_dir"] + BATCH_STATS + BATCH_INFO + ["config"]]
    curves = ordered.dropna(subset=["interval"]).groupby("run_dir")
    last = curves.tail(1).set_index("run_dir")[["interval", "updates", "seconds", "train_loss", "train_top1",
                                                "test_loss", "test_top1"]]
    runs = runs.join(last.rename(columns={"interval": "intervals"}))
    runs["intervals"] = runs["intervals"].fillna(0).astype(int)
    for metric in ("train_loss", "train_top1", "test_top1"):
        curve = curves[metric].apply(lambda s: s.to_numpy(dtype=float)).reindex(runs.index)
        runs[f"{metric}_curve"] = [c if isinstance(c, np.ndarray) else np.array([]) for c in curve]
    timing = curves.apply(update_time, include_groups=False).reindex(runs.index)
    runs["seconds_per_update"] = [t[0] if isinstance(t, tuple) else np.nan for t in timing]
    runs["timing"] = [t[1] if isinstance(t, tuple) else "" for t in timing]
    return runs.reset_index()


TIMING_TRAIN = "train_seconds"  # median per-interval update time, first interval left out as warm-up
TIMING_WALL = "wall clock"  # older records: the run's cumulative seconds over its updates


def update_time(intervals: pd.DataFrame) -> tuple[float, str]:
    """Seconds per update of one run, and which measurement it is.

    With train_seconds (the interval's updates alone): the median over intervals of train_seconds /
    updates in that interval, the first interval left out (warm-up: kernel selection, caches), unless
    it is the only one. Without it: cumulative seconds / updates at the last interval, which includes
    evaluation, checkpoints and process start-up."""
    updates = intervals["updates"].diff().fillna(intervals["updates"]).to_numpy(dtype=float)
    if intervals["train_seconds"].notna().all() and len(intervals):
        rates = intervals["train_seconds"].to_numpy(dtype=float) / np.where(updates > 0, updates, np.nan)
        return float(np.nanmedian(rates[1:] if len(rates) > 1 else rates)), TIMING_TRAIN
    last = intervals.iloc[-1]
    return (float(last["seconds"] / last["updates"]) if last["updates"] else np.nan), TIMING_WALL
