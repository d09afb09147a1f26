"""SweepSummary, the Hydra callback around a whole sweep: at its start it tells the jobs what the sweep
varies, at its end it prints what every job did and each cell's first numbers.

It is named in conf/config.yaml (hydra.callbacks). It gives each launch of a sweep an id
(SWEEP_ID_ENV, carried in every job's config); every job's note carries it, so at the end the notes with
this id are exactly this launch's jobs, on whatever machines the launcher put them.
It runs in the process that launched the sweep:
    sweep results/runs/demo: 12 jobs in 2m05s: 9 finished, 1 resumed, 2 skipped, 0 diverged, 0 failed
      failed    test_resnet-digits-hard_batches-d1.5-s0: ConfigError: delta=1.5 is outside (0, 1]: ...
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hardsamples import cells, record_files, slices
from hardsamples.sweep.job import (OUTCOMES, SLICE_OUTCOMES, SWEEP_ID_ENV, SWEEP_JOBS_ENV, SWEEP_STARTED_ENV,
                                   duration, read_job_notes)
from hardsamples.sweep.naming import SWEPT_ENV


def sweep_overrides(config) -> dict:
    """The multirun's overrides by key, as the basic sweeper combines them: hydra.sweeper.params first,
    the command line after (a key given on both takes the command line's)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    lines = [f"{key}={value}" for key, value in params.items()]
    lines += list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    return {override.key_or_group: override for override in OverridesParser.create().parse_overrides(lines)}


def swept_keys(config) -> list[str]:
    """The keys a multirun varies: sweep overrides on the command line and in hydra.sweeper.params."""
    return sorted(key for key, override in sweep_overrides(config).items() if override.is_sweep_override())


def job_count(config) -> int | None:
    """The number of jobs of a multirun (the product of each swept key's values), or None when a sweep
    cannot be counted before it runs (a glob over a config group, a range of another sweeper)."""
    count = 1
    for override in sweep_overrides(config).values():
        if override.is_sweep_override():
            try:
                count *= len(list(override.sweep_string_iterator()))
            except Exception:  # noqa: BLE001 - Hydra raises HydraException for sweeps it cannot list alone
                return None
    return count


def sweep_env_overrides(keys: list[str], sweep_id: str, jobs: int | None = None, started: float = 0.0) -> list[str]:
    """Hydra overrides that carry the sweep's settings to its jobs in their own config: each job's
    Hydra sets them in its environment while the job runs (hydra.job.env_set), on whatever machine.
    The launching process's environment is not enough: SLURM does not pass it on under --export=NONE
    (a site's default on some clusters). With them go the sweep's size and start, for its progress line."""
    return [f"++hydra.job.env_set.{SWEPT_ENV}='{','.join(keys)}'", f"++hydra.job.env_set.{SWEEP_ID_ENV}='{sweep_id}'",
            f"++hydra.job.env_set.{SWEEP_JOBS_ENV}='{jobs or ''}'",
            f"++hydra.job.env_set.{SWEEP_STARTED_ENV}='{started:.0f}'"]


class SweepSummary(Callback):
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.sweep_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.started = time.perf_counter()
        # Before any job starts: a sweep over a key outside the run name gives each job a directory of
        # its own, and two jobs of this sweep on one run leave two notes. The jobs get both in their
        # config (every launcher rebuilds a job's config from these hydra overrides, so it does not depend on
        # what environment SLURM passes on); this process, which notes runs it skips, in its environment.
        keys, sweep_id, jobs, started = swept_keys(config), uuid.uuid4().hex[:12], job_count(config), time.time()
        os.environ[SWEPT_ENV], os.environ[SWEEP_ID_ENV] = ",".join(keys), sweep_id
        os.environ[SWEEP_JOBS_ENV], os.environ[SWEEP_STARTED_ENV] = str(jobs or ""), f"{started:.0f}"
        with open_dict(config), read_write(config):
            config.hydra.overrides.hydra = [*config.hydra.overrides.hydra,
                                            *sweep_env_overrides(keys, sweep_id, jobs, started)]
        self.sweep_id = sweep_id

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        # Only this launch's jobs: a second launch of the same sweep, at the same time, leaves notes (its jobs
        # refused the directories this one holds) that are none of this launch's business.
        notes = {d: note for d, note in read_job_notes(config.hydra.sweep.dir).items()
                 if note.get("sweep_id") == self.sweep_id}
        print(summary_text(Path(config.hydra.sweep.dir), notes, time.perf_counter() - self.started), flush=True)
        if any(outcome_of(note) == "failed" for note in notes.values()):
            sys.exit(1)  # SystemExit passes through Hydra's callback and error handlers: the sweep fails


def summary_text(sweep_dir: Path, notes: dict[Path, dict], seconds: float) -> str:
    """notes: each job's note by its path (<run dir>/job.json, job.refused-*.json or job.postponed.json)."""
    outcomes = {path: outcome_of(note) for path, note in notes.items()}
    counts = {o: list(outcomes.values()).count(o) for o in OUTCOMES + SLICE_OUTCOMES}
    lines = [f"sweep {sweep_dir}: {len(notes)} jobs in {duration(seconds)}: "
             + ", ".join(f"{counts[o]} {o}" for o in OUTCOMES)
             + "".join(f", {counts[o]} {o}" for o in SLICE_OUTCOMES if counts[o])]
    for path, outcome in sorted(outcomes.items()):
        if outcome in ("diverged", "failed"):
            error = notes[path].get("error") or "the job stopped without closing its job.json (killed?)"
            lines.append(f"  {outcome:<9} {path.parent.name}: {error}")
    over = sorted({path.parent for path, outcome in outcomes.items() if outcome in ("finished", "resumed", "skipped")})
    return "\n".join(lines + slices.budget_line(counts) + cell_lines(over))


def final_row(run_dir: Path) -> tuple[dict, dict] | None:
    """run.json and the last metrics.csv row of a finished run, or None."""
    try:
        header = record_files.read_run_json(run_dir / "run.json")
        rows = record_files.read_rows(run_dir, "metrics.csv")
    except (OSError, ValueError):
        return None
    if header["status"] != "finished" or not rows:
        return None
    return header, rows[-1]


def cell_lines(run_dirs: list[Path]) -> list[str]:
    """Per cell (cells.py: model, dataset, method, delta, setup and the settings the sweep varied):
    the seeds' mean final test top-1 and train loss with their sd, a first look only; `make tables`
    gives e, delta-e and their 95% CIs, cell by cell the same."""
    found = [row for row in map(final_row, run_dirs) if row]
    by_cell: dict[str, list[dict]] = {}
    for cell, (_, row) in zip(cells.cells_of([header for header, _ in found]), found):
        by_cell.setdefault(cells.label(cell), []).append(row)
    lines = ["  per cell, the seeds' mean +/- sd at the end of training (make tables: e, delta-e, 95% CIs):"] if by_cell else []
    for label, rows in sorted(by_cell.items()):
        top1 = mean_sd([as_number(r.get("test_top1")) for r in rows], 2)
        loss = mean_sd([as_number(r.get("train_loss")) for r in rows], 4)
        lines.append(f"    {label}: {len(rows)} run(s), test top-1 {top1}, train loss {loss}")
    return lines


def as_number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def mean_sd(values: list[float], digits: int) -> str:
    """mean +/- sd of the finite values, saying how many were not (a damaged or diverged record's NaN)."""
    finite = [v for v in values if math.isfinite(v)]
    skipped = f" ({len(values) - len(finite)} not a number)" if len(finite) < len(values) else ""
    if not finite:
        return "n/a" + skipped
    mean = f"{statistics.mean(finite):.{digits}f}"
    return mean + (f" +/- {statistics.stdev(finite):.{digits}f}" if len(finite) > 1 else "") + skipped


def outcome_of(note: dict) -> str:
    """A job still `running` when its sweep ends was killed without a word: it failed."""
    return note.get("outcome") if note.get("outcome") in OUTCOMES + SLICE_OUTCOMES else "failed"
