"""One sweep job: its run, its note (job.json), its outcome, the sweep's progress after it, and its bar's line.

Each sweep job leaves `job.json` in its run directory: what this attempt did (running while it runs,
then finished, resumed, skipped, diverged or failed), any error, and where it ran (host, pid, GPU).
The sweep summary reads these.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from hardsamples import record_files, records, slices
from hardsamples.errors import ConfigError, Terminated, stop_reason
from hardsamples.record_files import OVER, read_job_note
from hardsamples.sweep.gpus import claim_gpu, lock_dir

log = logging.getLogger("hardsamples")

SWEEP_ID_ENV = "HARDSAMPLES_SWEEP_ID"  # one id per launch of a sweep, set by SweepSummary.on_multirun_start
SWEEP_JOBS_ENV = "HARDSAMPLES_SWEEP_JOBS"  # its number of jobs, when it can be counted
SWEEP_STARTED_ENV = "HARDSAMPLES_SWEEP_STARTED"  # when it was launched (seconds since the epoch)
# What a job did (job.json outcome; "running" while it runs): the summary counts each.
OUTCOMES = ("finished", "resumed", "skipped", "diverged", "failed")
SLICE_OUTCOMES = ("stopped", "postponed")  # a slice's time budget (slices.py): counted when there are any


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


PROCESS_FIELDS = ("scheduler_job_id", "host", "pid", "cuda_visible_devices", "started_at")  # where and when it ran


def new_note(job_num: int, in_this_process: bool = True) -> dict:
    """A job note's fields (job.json), for a fresh attempt of this sweep that has not ended: where it runs
    when this process is the job (in_this_process), else unknown (a launcher noting a job that died)."""
    note = {"attempt": uuid.uuid4().hex[:12], "job_num": job_num, "outcome": None, "error": None,
            "sweep_id": os.environ.get(SWEEP_ID_ENV), "scheduler_job_id": scheduler_job_id(),
            "host": socket.gethostname(), "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "started_at": time.time(), "ended_at": None}
    if not in_this_process:
        note.update(dict.fromkeys(PROCESS_FIELDS))
    return note


class JobNote:
    """`job.json`: one sweep job's attempt at a run, written when the job starts and when it ends."""

    def __init__(self, run_dir: Path, job_num: int):
        self.fields = new_note(job_num)
        self.path = Path(run_dir) / "job.json"
        there, sweep_id = read_job_note(self.path), self.fields["sweep_id"]
        if sweep_id and there is not None and there.get("sweep_id") == sweep_id and there.get("job_num") != job_num:
            # Another job of this same sweep had this run (a key the run is not compared by, e.g.
            # record.trace, or a value listed twice): its note stays, this job's goes beside it.
            self.path = Path(run_dir) / f"job.also-{self.fields['attempt']}.json"
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
        note = new_note(job_num)
        note.update(outcome=outcome, error=error, ended_at=note["started_at"])
        try:
            record_files.write_json(Path(run_dir) / name.format(attempt=note["attempt"]), note)
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

