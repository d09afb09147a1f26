"""The sweep plumbing: each job's GPU, its note, its run, and the summary at the end of a sweep.

Contents, in order: the GPU a job claims; the directory of a job (a config hash when a sweep varies a
key outside the run name); job.json, the note of each job's attempt; the sweep job itself
(`sweep_job`: one run, its failure recorded, never raised); and `SweepSummary`, the Hydra callback
that prints what every job did when the sweep ends.

Hydra's launchers start the jobs (basic: one after another in this process; joblib: worker
processes on this machine; submitit: SLURM jobs or local subprocesses). None of them gives a job its
own GPU, so each job process claims one at job start, before CUDA is initialised: the first GPU,
counting from `job number mod GPU count`, that no other process on this machine holds. The claim is
an flock on a file, held until the process exits, so a joblib worker keeps its GPU for every job it
runs, a dead worker frees it, and two sweeps on one machine do not pile onto GPU 0. With the joblib
launcher's jobs_per_gpu = k each GPU has k slots (k processes share it, each pinned to it): the first
slot of every GPU is claimed before a second one. When every slot is held the job shares the GPU its
job number points at. Under SLURM the job sees only the GPUs it was allocated, so with one GPU per
job there is nothing to claim.

Each sweep job leaves `job.json` in its run directory: what this attempt did (running while it runs,
then finished, resumed, skipped, diverged or failed), any error, and where it ran (host, pid, GPU).
The sweep summary reads these.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hardsamples import cells, record_files, records, slices
from hardsamples.errors import ConfigError, Terminated, stop_reason
from hardsamples.record_files import NOT_COMPARED, OVER, comparable, read_job_note, recorded_config

log = logging.getLogger("hardsamples")
_claimed_lock = None  # the open lock file of this process's GPU, kept open for the process's life


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES tokens, without initialising CUDA."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [token.strip() for token in listed.split(",") if token.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]  # NVML count: CUDA stays uninitialised


def gpu_count_or(default: int) -> int:
    """Config resolver `${visible_gpus_or:2}`: the number of visible GPUs, or `default` without any."""
    return len(visible_gpus()) or int(default)


def gpu_job_slots(jobs_per_gpu, cpu_default) -> int:
    """Config resolver `${gpu_job_slots:${.jobs_per_gpu},2}` (conf/launcher/joblib.yaml's n_jobs): k jobs
    on each visible GPU; without a GPU, cpu_default jobs whatever k (a grid tuned for a GPU, say 8 runs
    per GPU, would otherwise start 8 processes on a laptop's CPU)."""
    gpus = len(visible_gpus())
    if not gpus:
        return int(cpu_default)
    try:
        return gpus * max(1, int(jobs_per_gpu))
    except (TypeError, ValueError):  # not a number: the launcher refuses it in one line
        return gpus


OmegaConf.register_new_resolver("visible_gpus_or", gpu_count_or, replace=True)
OmegaConf.register_new_resolver("gpu_job_slots", gpu_job_slots, replace=True)

# The keys a run's name is made of (conf/config.yaml run_name); a sweep over any other key that
# changes what a run computes gives each job a directory of its own: <run_name>-<config hash>.
NAME_KEYS = ("model", "model.name", "dataset", "dataset.name", "method", "method.name", "delta", "seed", "run_name")
SWEPT_ENV = "HARDSAMPLES_SWEPT_KEYS"
SWEEP_ID_ENV = "HARDSAMPLES_SWEEP_ID"  # one id per launch of a sweep, set by SweepSummary.on_multirun_start
SWEEP_JOBS_ENV = "HARDSAMPLES_SWEEP_JOBS"  # its number of jobs, when it can be counted
SWEEP_STARTED_ENV = "HARDSAMPLES_SWEEP_STARTED"  # when it was launched (seconds since the epoch)


def compared_keys_swept(swept) -> list[str]:
    """The swept keys that change what a run computes but not its name."""
    return sorted(key for key in swept if key and key not in NAME_KEYS and not key.startswith("hydra")
                  and key.split(".")[0] not in NOT_COMPARED)


def config_hash(config: dict) -> str:
    """A short stable hash of the config a run is compared by (record_files.comparable)."""
    return hashlib.sha256(json.dumps(comparable(config), sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_dir_name(config: dict, swept) -> str:
    """A sweep job's directory: the run name, with the config's hash appended when the sweep varies a
    key the name does not show (optimizer.lr, epochs, fidelity, ...), so no two configs share one.
    Sweeps over model, dataset, method, delta and seed keep the plain run names."""
    if not compared_keys_swept(swept):
        return config["run_name"]
    return f"{config['run_name']}-{config_hash(config)}"


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


def job_swept_keys(root) -> list[str]:
    """The swept keys as a job sees them: in its config (sweep_env_overrides; Hydra resolves the job's
    directory before it applies env_set), else in the environment (a job started some other way)."""
    listed = OmegaConf.select(root, f"hydra.job.env_set.{SWEPT_ENV}", default=None)
    if listed is None:
        listed = os.environ.get(SWEPT_ENV, "")
    return [key for key in str(listed).split(",") if key]


def _sweep_subdir(*, _root_) -> str:
    """Resolver `${sweep_subdir:}` (hydra.sweep.subdir): the run name, plus a config hash when the
    sweep varies a key the name does not show."""
    swept = job_swept_keys(_root_)
    if not compared_keys_swept(swept):
        return str(_root_.run_name)
    return run_dir_name(recorded_config(_root_), swept)


OmegaConf.register_new_resolver("sweep_subdir", _sweep_subdir, replace=True)


def lock_dir() -> Path:
    path = Path(os.environ.get("HARDSAMPLES_GPU_LOCKS", Path(tempfile.gettempdir()) / f"hardsamples-gpus-{os.getuid()}"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def slot_lock_name(gpu: str, slot: int) -> str:
    """Slot 0 is a GPU's whole claim for one job per GPU, so sweeps with and without jobs_per_gpu agree."""
    return f"gpu-{gpu}.lock" if slot == 0 else f"gpu-{gpu}.slot{slot}.lock"


def claim_gpu(job_num: int, jobs_per_gpu: int = 1) -> str | None:
    """Restrict this process to one GPU (CUDA_VISIBLE_DEVICES) when several are visible, claiming one
    of its `jobs_per_gpu` slots: every GPU's first slot before any second one.

    Returns the GPU claimed now, or None when there was nothing to do: one GPU or none, CUDA already
    initialised in this process (a worker that ran an earlier job keeps that job's GPU), or a claim
    already held.
    """
    global _claimed_lock
    gpus = visible_gpus()
    if _claimed_lock is not None or len(gpus) <= 1 or torch.cuda.is_initialized():
        return None
    start, locks = job_num % len(gpus), lock_dir()
    for slot in range(max(1, int(jobs_per_gpu))):
        for gpu in gpus[start:] + gpus[:start]:
            lock = open(locks / slot_lock_name(gpu, slot), "w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            _claimed_lock = lock
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
            return gpu
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus[start]  # all held: share, spread by job number
    return gpus[start]


def scheduler_job_id() -> str | None:
    """The SLURM (array) job id, or submitit's local job id: the same across requeues of one job."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or env.get("SUBMITIT_LOCAL_JOB_ID") or None


def ended_note_of_this_job(run_dir: Path) -> dict | None:
    """job.json when it was written by this very scheduler job and says how the job ended: a job that
    SLURM requeued after its run was over (pre-empted inside the kill window) keeps that note."""
    job_id = scheduler_job_id()
    if job_id is None:
        return None
    note = read_job_note(Path(run_dir) / "job.json")
    if note is not None and note.get("scheduler_job_id") == job_id \
            and note.get("outcome") in ("finished", "resumed", "skipped", "diverged"):
        return note
    return None


class JobNote:
    """`job.json`: one sweep job's attempt at a run, written when the job starts and when it ends."""

    def __init__(self, run_dir: Path, job_num: int):
        attempt, sweep_id = uuid.uuid4().hex[:12], os.environ.get(SWEEP_ID_ENV)
        self.path = Path(run_dir) / "job.json"
        there = read_job_note(self.path)
        if sweep_id and there is not None and there.get("sweep_id") == sweep_id and there.get("job_num") != job_num:
            # Another job of this same sweep had this run (a key the run is not compared by, e.g.
            # record.trace, or a value listed twice): its note stays, this job's goes beside it.
            self.path = Path(run_dir) / f"job.also-{attempt}.json"
        self.fields = {"attempt": attempt, "job_num": job_num, "outcome": None, "error": None, "sweep_id": sweep_id,
                       "scheduler_job_id": scheduler_job_id(), "host": socket.gethostname(), "pid": os.getpid(),
                       "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                       "started_at": time.time(), "ended_at": None}
        record_files.write_json(self.path, {**self.fields, "outcome": "running"})

    def close(self, outcome: str, error: str | None = None) -> None:
        self.fields.update(outcome=outcome, error=error, ended_at=time.time())
        record_files.write_json(self.path, self.fields)

    @staticmethod
    def refused(run_dir: Path, job_num: int, error: str) -> None:
        """A job that could not have the run directory (another process holds it): its failure goes
        to a note of its own, job.refused-<attempt>.json, so the holder's job.json is left alone."""
        JobNote.aside(run_dir, job_num, "failed", error, "job.refused-{attempt}.json")

    @staticmethod
    def aside(run_dir: Path, job_num: int, outcome: str, error: str | None, name: str) -> None:
        """A job's note beside job.json (name: its file name, {attempt} filled in), for a job that did
        not train its run: refused its directory, or postponed past a slice's time budget."""
        attempt = uuid.uuid4().hex[:12]
        note = {"attempt": attempt, "job_num": job_num, "outcome": outcome, "error": error,
                "sweep_id": os.environ.get(SWEEP_ID_ENV), "host": socket.gethostname(), "pid": os.getpid(),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "started_at": time.time(), "ended_at": time.time()}
        try:
            record_files.write_json(Path(run_dir) / name.format(attempt=attempt), note)
        except OSError:
            pass  # the directory is a file or read-only: the job's log still has the error


def read_job_notes(sweep_dir: Path) -> dict[Path, dict]:
    """Every job note in a sweep directory, by its path: each run directory's latest job.json, and
    the notes of jobs refused a run directory another process held (job.refused-*.json)."""
    notes = {}
    for path in sorted(Path(sweep_dir).glob("*/job*.json")):
        if (note := read_job_note(path)) is not None:  # one unreadable is left out: the summary reports what it can
            notes[path] = note
    return notes


# --- the sweep job ---------------------------------------------------------------------------------

def sweep_job(cfg: DictConfig, run_dir: Path, job_num: int, run_one: Callable[[DictConfig, Path], str],
              jobs_per_gpu: int = 1) -> str:
    """One job of a sweep: returns its outcome (finished, resumed, skipped, diverged or failed; with a
    time budget also postponed or stopped, slices.py). jobs_per_gpu: the joblib launcher's, for the GPU claim.

    A failure is written to job.json and returned, never raised: in Hydra 1.3 a job that raises makes
    the sweeper raise once the batch is done, which ends the sweep without its summary. KeyboardInterrupt
    and SystemExit still end the job (a SLURM pre-emption exits this way, and is requeued by submitit).
    """
    if slices.budget_spent() and not is_over_already(run_dir):  # a slice's time budget: left for the next slice
        log.info("%s: not started, the sweep's time budget is spent", cfg.run_name)
        JobNote.aside(run_dir, job_num, "postponed", None, slices.POSTPONED_NOTE)
        return "postponed"
    gpu = claim_gpu(job_num, jobs_per_gpu)
    if gpu is not None:
        log.info("%s: job %d runs on GPU %s", cfg.run_name, job_num, gpu)
    try:
        with record_files.hold_run_dir(run_dir):
            outcome = sweep_job_held(cfg, run_dir, job_num, run_one)
    except record_files.LostHold as err:  # the directory was deleted under the run: nothing more is written there
        log.error("%s failed: %s", cfg.run_name, err)
        outcome = "failed"
    except ConfigError as err:  # the directory is in use (or is a file): this job's note goes beside it
        log.error("%s failed: %s", cfg.run_name, err)
        JobNote.refused(run_dir, job_num, f"{type(err).__name__}: {err}")
        outcome = "failed"
    except OSError as err:  # e.g. a full disk refused job.json: the job fails, the sweep goes on to its summary
        log.error("%s failed: %s", cfg.run_name, err)
        outcome = "failed"
    if os.environ.get(SWEEP_ID_ENV):
        log.info("%s", progress_line(Path(run_dir).parent))
    return outcome


def sweep_job_held(cfg: DictConfig, run_dir: Path, job_num: int, run_one: Callable[[DictConfig, Path], str]) -> str:
    ended = ended_note_of_this_job(run_dir)
    if ended is not None and (records.read_record(run_dir) or {}).get("status") in OVER:
        log.info("%s: requeued after it ended (%s): nothing to do", cfg.run_name, ended["outcome"])
        return ended["outcome"]
    note = JobNote(run_dir, job_num)
    (run_dir / slices.POSTPONED_NOTE).unlink(missing_ok=True)  # an earlier slice's, now out of date
    try:
        before = records.read_record(run_dir)
        status = run_one(cfg, run_dir)
    except Exception as err:
        if isinstance(err, ConfigError) or getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            log.error("%s failed: %s", cfg.run_name, err)  # bad input or a full disk: its line says it all
        else:
            log.exception("%s failed", cfg.run_name)
        with contextlib.suppress(OSError, record_files.LostHold):  # a full disk refuses the note too: the log has it
            note.close("failed", f"{type(err).__name__}: {err}")
        return "failed"
    except slices.BudgetSpent as err:  # at_budget=stop: recorded interrupted; the next slice resumes it
        note.close("stopped", str(err))
        return "stopped"
    except (Terminated, SystemExit, KeyboardInterrupt) as err:  # the job process ends: note why, then end
        with contextlib.suppress(OSError, record_files.LostHold):
            note.close("failed", stop_reason(err))
        raise
    after = records.read_record(run_dir)
    outcome = job_outcome(before, after, status)
    note.close(outcome, after.get("error"))
    return outcome


def is_over_already(run_dir: Path) -> bool:
    """Whether run_dir's record says the run is over (a rerun would only skip it); a record that cannot
    be read counts as not over, and the job that starts it says what is wrong."""
    try:
        return (records.read_record(run_dir) or {}).get("status") in OVER
    except ConfigError:
        return False


def job_outcome(before: dict | None, after: dict, status: str) -> str:
    """What a job did, from the run record before and after it: a run already over is skipped."""
    if before and before["status"] in OVER:
        return "skipped"
    resumes_before = len(before.get("resumed_from", [])) if before else 0
    if status == "finished" and len(after.get("resumed_from", [])) > resumes_before:
        return "resumed"
    return status


def progress_line(sweep_dir: Path) -> str:
    """The sweep as a whole, after each of its jobs: runs over of all, and the time left at the rate
    so far (the jobs' notes of this launch, sweep_id; its size and start came with the job's config)."""
    sweep_id = os.environ.get(SWEEP_ID_ENV)
    notes = [note for note in read_job_notes(sweep_dir).values() if note.get("sweep_id") == sweep_id]
    done = [note for note in notes if note.get("outcome") in OUTCOMES]
    trained = sum(note.get("outcome") != "skipped" for note in done)
    total = int(os.environ.get(SWEEP_JOBS_ENV) or 0) or None
    elapsed = time.time() - float(os.environ.get(SWEEP_STARTED_ENV) or time.time())
    line = f"sweep {sweep_dir.name}: {len(done)}{f' of {total}' if total else ''} runs over in {duration(elapsed)}"
    if total and trained and total > len(done):
        line += f", about {duration(elapsed / trained * (total - len(done)))} left"
    return line


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(max(seconds, 0.0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


_bar_line = None  # (slot, open lock file) of this process's progress bar in a sweep


def bar_position() -> int:
    """The terminal line of this process's progress bar: in a sweep, the lowest line no other job
    process of this user on this machine holds (an flock, kept for the process's life like a GPU
    claim), so two jobs running at once never draw over each other; 0 outside a sweep."""
    global _bar_line
    if os.environ.get(SWEEP_ID_ENV) is None:
        return 0
    if _bar_line is None:
        for slot in range(64):
            lock = open(lock_dir() / f"bar-{slot}.lock", "w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            _bar_line = (slot, lock)
            break
    return _bar_line[0] if _bar_line else 0


# --- the end of a sweep ------------------------------------------------------------------------------
# SweepSummary is a Hydra callback (conf/config.yaml, hydra.callbacks). It gives each launch of a sweep an id
# (SWEEP_ID_ENV, carried in every job's config); every job's note carries it, so at the end the notes with
# this id are exactly this launch's jobs, on whatever machines the launcher put them.
# It runs in the process that launched the sweep:
#     sweep results/runs/demo: 12 jobs in 2m05s: 9 finished, 1 resumed, 2 skipped, 0 diverged, 0 failed
#       failed    test_resnet-digits-hard_batches-d1.5-s0: ConfigError: delta=1.5 is outside (0, 1]: ...

OUTCOMES = ("finished", "resumed", "skipped", "diverged", "failed")
SLICE_OUTCOMES = ("stopped", "postponed")  # a slice's time budget (slices.py): counted when there are any


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
    """Per cell (cells.py: model, dataset, method, delta, protocol and the settings the sweep varied):
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
