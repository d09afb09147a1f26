"""Hydra's joblib and submitit launchers, made to survive a job that is killed from outside.

Hydra's own launchers end the whole multirun when one job dies without returning: joblib raises
TerminatedWorkerError when a worker process is killed (the other jobs are aborted, the rest never
start), and submitit raises UncompletedJobError for a job SLURM killed (scancel, an OOM kill, a node
failure) or, on the local executor, a job process killed with a signal. Either way the sweep summary
never prints and the killed run is left `running`.

These subclasses (conf/launcher/{joblib,submitit_local,slurm}.yaml select them; Hydra accepts launchers only from
the hydra_plugins namespace, hence this package) record such a job as
failed in its job.json (the run in run.json: interrupted), return it to Hydra as a failed job, and let the rest of the sweep
run to its summary. A rerun of the sweep resumes the killed run from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_joblib_launcher import _core as joblib_core
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher as HydraJoblibLauncher
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as hydra_submitit

from hardsamples import record_files, records
from hardsamples.config_checks import refuse
from hardsamples.errors import ConfigError
from hardsamples.record_files import UnusableFile, read_job_note, read_run_json, recorded_config
from hardsamples.sweep.job import JobNote, new_note
from hydra_plugins.hardsamples_launchers import config  # noqa: F401  the launcher's options (jobs_per_gpu)

log = logging.getLogger(__name__)


def job_run_dir(launcher, overrides: Sequence[str]) -> Path | None:
    """The run directory a job with these overrides writes to, as the job itself resolves it."""
    found = job_config_and_dir(launcher, overrides)
    return found[1] if found else None


def job_config_and_dir(launcher, overrides: Sequence[str]) -> tuple[dict, Path] | None:
    """The resolved run config (no hydra node) and run directory of a job, as the job itself makes them."""
    try:
        config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
        run_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        return recorded_config(config), run_dir
    except Exception:  # noqa: BLE001 - a job that cannot even compose fails on its own, with its own message
        return None


def already_over(launcher, overrides: Sequence[str]) -> Path | None:
    """The run directory of a job whose run is already over with the same config and complete rows:
    such a job would only start, find it done and skip it, so it is not submitted at all. Anything
    doubtful (no record, another config, missing rows, a directory in use) is submitted, and the job
    itself says what is wrong."""
    found = job_config_and_dir(launcher, overrides)
    if found is None:
        return None
    config, run_dir = found
    try:
        return run_dir if records.is_over(run_dir, records.previous_run(run_dir, config)) else None
    except (ConfigError, OSError):
        return None


def note_skipped(run_dir: Path, job_num: int) -> bool:
    """job.json says `skipped` for a run over before its sweep started (counted by the summary)."""
    try:
        with record_files.hold_run_dir(run_dir) as writable:
            if writable:
                JobNote(run_dir, job_num).close("skipped")
            return writable
    except ConfigError:  # held by another process: let a job look at it
        return False


def note_attempt(run_dir: Path | None) -> str | None:
    note = read_job_note(run_dir / "job.json") if run_dir else None
    return note.get("attempt") if note else None


def record_killed(run_dir: Path | None, job_num: int, error: str, stale_attempt: str | None = None) -> None:
    """Mark a job that died without a word: job.json failed, a run.json still `running` interrupted. Left
    alone when another process holds the run directory (e.g. the job was requeued and runs again).
    A job that died before it made its run directory (cancelled while pending, a job environment
    that cannot start Python) gets the directory with a failed job.json: the summary counts it and
    the sweep fails, and the records loader lists it as a failed job (loading.load_records). So does
    one whose run directory still holds the note of an earlier sweep (`stale_attempt`, read before
    this job was submitted): the job never wrote its own."""
    if run_dir is None:
        return
    try:
        with record_files.hold_run_dir(run_dir) as writable:
            if not writable:
                return
            note_path = run_dir / "job.json"
            note = read_job_note(note_path)
            if note is None or (stale_attempt is not None and note.get("attempt") == stale_attempt):
                # A fresh attempt id: the summary counts the notes whose attempt is new to this sweep.
                note = new_note(job_num, in_this_process=False)
            if note.get("outcome") in (None, "running"):
                note.update(outcome="failed", error=error, ended_at=time.time())
                record_files.write_json(note_path, note)
            run_json = run_dir / "run.json"
            try:
                header = read_run_json(run_json)
            except UnusableFile:
                return
            if header["status"] == "running":
                header.update(status="interrupted", error=error)  # killed from outside: a rerun resumes it
                record_files.write_json(run_json, header)
    except ConfigError:
        log.info("%s is held by another process: left as it is", run_dir)


def finished_return(overrides: Sequence[str], outcome: str) -> JobReturn:
    """A job's outcome as sweep_job returns it; Hydra's sweeper goes on to the next batch."""
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = outcome
    return ret


def failed_return(overrides: Sequence[str]) -> JobReturn:
    """A job that died, as sweep_job reports a failure."""
    return finished_return(overrides, "failed")


class JoblibLauncher(HydraJoblibLauncher):
    """Hydra's joblib launcher; when a worker process dies, the jobs it took down are recorded failed
    and the jobs not yet started run in a fresh pool. `jobs_per_gpu` is the job processes' business
    (their GPU claim), never joblib's."""

    def __init__(self, jobs_per_gpu: int = 1, **kwargs) -> None:
        if not isinstance(jobs_per_gpu, int) or isinstance(jobs_per_gpu, bool) or jobs_per_gpu < 1:
            refuse(f"hydra.launcher.jobs_per_gpu={jobs_per_gpu} must be a whole number >= 1 (the jobs that"
                   " share one GPU), e.g. hydra.launcher.jobs_per_gpu=4")
        super().__init__(**kwargs)
        self.jobs_per_gpu = jobs_per_gpu

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from joblib import Parallel, delayed
        from joblib.externals.loky.process_executor import BrokenProcessPool, TerminatedWorkerError

        from hydra.core.utils import configure_log, filter_overrides, setup_globals

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        job_overrides = [list(o) for o in job_overrides]
        shown = dict(self.joblib, backend="loky")
        joblib_core.process_joblib_cfg(shown)
        log.info("Joblib.Parallel(%s) is launching %d jobs", ",".join(f"{k}={v}" for k, v in shown.items()),
                 len(job_overrides))
        log.info("Launching jobs, sweep output dir : %s", sweep_dir)
        for i, overrides in enumerate(job_overrides):
            log.info("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(overrides)))
        run_dirs = [job_run_dir(self, overrides) for overrides in job_overrides]
        results: dict[int, JobReturn] = {}
        pending = list(range(len(job_overrides)))
        while pending:
            before = {i: note_attempt(run_dirs[i]) for i in pending}
            cfg = dict(self.joblib, backend="loky", return_as="generator_unordered")
            joblib_core.process_joblib_cfg(cfg)
            try:
                for i, ret in Parallel(**cfg)(delayed(_indexed)(i, initial_job_idx + i, job_overrides[i],
                                                                self.hydra_context, self.config,
                                                                self.task_function, _singleton_state())
                                              for i in pending):
                    results[i] = ret
                pending = []
            except (TerminatedWorkerError, BrokenProcessPool) as err:
                left = [i for i in pending if i not in results]
                started = [i for i in left if note_attempt(run_dirs[i]) != before[i]]
                error = (f"{type(err).__name__}: a joblib worker died (killed?) while this job ran: rerun the"
                         " sweep to resume it")
                for i in started:
                    log.error("job %d (%s) died with its worker: recorded as failed", initial_job_idx + i,
                              run_dirs[i].name if run_dirs[i] else "?")
                    record_killed(run_dirs[i], initial_job_idx + i, error)
                    results[i] = failed_return(job_overrides[i])
                if not started:  # nothing to blame: every job left is recorded failed, never retried forever
                    for i in left:
                        record_killed(run_dirs[i], initial_job_idx + i, error, before[i])
                        results[i] = failed_return(job_overrides[i])
                pending = [i for i in left if i not in results]
                if pending:
                    log.warning("a joblib worker died: %d job(s) not started yet run in a fresh pool", len(pending))
        return [results[i] for i in range(len(job_overrides))]


def _singleton_state():
    from hydra.core.singleton import Singleton

    return Singleton.get_state()


def _indexed(i, idx, overrides, hydra_context, config, task_function, singleton_state):
    return i, joblib_core.execute_job(idx, overrides, hydra_context, config, task_function, singleton_state)


class _SurvivingSubmitit:
    """submitit: a job whose results cannot be had (UncompletedJobError and the like) is recorded
    failed; the other jobs' results are still collected and the sweep ends with its summary."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Submit the jobs whose runs are not over yet; a rerun of a finished sweep queues no job."""
        over = {}
        for i, overrides in enumerate(job_overrides):
            run_dir = already_over(self, overrides)
            if run_dir is not None and note_skipped(run_dir, initial_job_idx + i):
                over[i] = run_dir
        if over:
            log.info("%d of %d run(s) already over: not submitted (skipped)", len(over), len(job_overrides))
        submit = [i for i in range(len(job_overrides)) if i not in over]
        results = dict(zip(submit, self.launch_jobs([job_overrides[i] for i in submit], initial_job_idx)
                           if submit else []))
        for i in over:
            results[i] = finished_return(job_overrides[i], "skipped")
        return [results[i] for i in range(len(job_overrides))]

    def launch_jobs(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        import submitit

        collected = []
        real_map_array = submitit.AutoExecutor.map_array
        run_dirs = [job_run_dir(self, overrides) for overrides in job_overrides]
        stale = [note_attempt(run_dir) for run_dir in run_dirs]  # a job that never starts leaves these

        def map_array(executor, fn, *iterables):
            jobs = real_map_array(executor, fn, *iterables)
            collected.extend(jobs)
            self.watch(jobs)
            return [_Deferred(job) for job in jobs]

        # Private reach: hydra_submitit's launch() makes its AutoExecutor, submits with map_array and
        # waits on the jobs inside one method, with no hook between. Swapping the class's map_array for
        # this call only (restored below) sees the jobs before Hydra waits on them, without copying
        # launch(); submitit has no public submission callback.
        submitit.AutoExecutor.map_array = map_array
        try:
            with hangup_interrupts():
                deferred = super().launch(job_overrides, initial_job_idx)
        except KeyboardInterrupt:
            # Ctrl-C, a lost login shell (SIGHUP) or SIGTERM while the launcher waits: its jobs would go
            # on training unwatched, and a second launch would start a second writer on each run.
            log.error("interrupted: cancelling the sweep's %d job(s)", len(collected))
            for job in collected:
                try:
                    job.cancel(check=False)
                except Exception as err:  # noqa: BLE001 - cancel what can be cancelled
                    log.warning("could not cancel job %s (%s)", getattr(job, "job_id", "?"), err)
            raise
        finally:
            submitit.AutoExecutor.map_array = real_map_array
        results = []
        for i, (overrides, item) in enumerate(zip(job_overrides, deferred)):
            if isinstance(item, JobReturn):
                results.append(item)
                continue
            run_dir = run_dirs[i]
            error = (f"{type(item).__name__}: the {self._EXECUTOR} job ended without a result (killed by the"
                     f" launcher, SLURM or a signal?): {str(item).splitlines()[0] if str(item) else ''}").rstrip(": ")
            log.error("job %d (%s) %s", initial_job_idx + i, run_dir.name if run_dir else "?", error)
            record_killed(run_dir, initial_job_idx + i, error + "; rerun the sweep to resume it", stale[i])
            results.append(failed_return(overrides))
        return results

    def watch(self, jobs) -> None:
        """Hook for a launcher that watches its jobs' states its own way (SLURM without sacct)."""


@contextlib.contextmanager
def hangup_interrupts():
    """SIGHUP (the login shell is gone) and SIGTERM raise KeyboardInterrupt while the launcher waits."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGHUP, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Deferred:
    """Stands in for a submitit job in Hydra's `[j.results()[0] for j in jobs]`: the exception of a job
    that ended without a result is returned instead of raised, so every job is waited for."""

    def __init__(self, job):
        self.job = job

    def results(self):
        try:
            return self.job.results()
        except Exception as err:  # noqa: BLE001 - UncompletedJobError, FailedJobError, ...
            return [err]


class LocalLauncher(_SurvivingSubmitit, hydra_submitit.LocalLauncher):
    pass


class SlurmLauncher(_SurvivingSubmitit, hydra_submitit.SlurmLauncher):
    def __init__(self, **params) -> None:
        super().__init__(**params)
        # The job step gets the batch script's environment (submitit's SUBMITIT_EXECUTOR, the setup
        # lines' exports) even where sbatch runs with --export=NONE, which srun would otherwise inherit
        # through SLURM_EXPORT_ENV and start Python without them. With sbatch's default it changes nothing.
        self.params["srun_args"] = ["--export=ALL", *(self.params.get("srun_args") or [])]

    def watch(self, jobs) -> None:
        """The sweep's jobs report their states through a QueueWatcher: sacct where it works, squeue
        where it does not, so a job killed on a cluster without accounting is seen to end."""
        watcher = queue_watcher_class()()
        for job in jobs:
            tasks = [job.task(i) for i in range(job.num_tasks)]  # the job itself when it has one task
            for each in [job, *(task for task in tasks if task is not job)]:
                # Private reach: submitit sets one watcher per Job class, with no parameter to pass ours.
                each.watcher = watcher  # the class's watcher asks sacct only
                watcher.register_job(each.job_id)


# --- job states without accounting ---------------------------------------------------------------
# submitit waits for a job until its result file appears or sacct says the job ended. Where the cluster
# keeps no accounting (no slurmdbd: sacct says "Slurm accounting storage is disabled", or sacct is not
# installed), sacct never says anything, every job stays UNKNOWN, and a job killed before writing its
# result (scancel, OOM kill, node failure) is waited for forever. squeue still knows every job until
# slurmctld forgets it (MinJobAge after it ends): while it lists the job its state is used, and a job
# it no longer lists has ended; the result file then says whether it finished.

# squeue states of a job that has ended for good. Any other state (PENDING, RUNNING, COMPLETING,
# REQUEUED, SIGNALING, SUSPENDED, ...) may still lead to a result; PREEMPTED too, as submitit holds.
ENDED_IN_QUEUE = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
                            "OUT_OF_MEMORY", "REVOKED", "TIMEOUT"})
LEFT_QUEUE = "NOT_IN_QUEUE"  # the state given to a job squeue no longer knows: it has ended


def sacct_usable() -> bool:
    """Whether sacct answers on this cluster (it exits 1, "Slurm accounting storage is disabled",
    where accounting is off)."""
    try:
        probe = subprocess.run(["sacct", "--noheader", "-X", "-o", "JobID", "-S", "now"], capture_output=True,
                               text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def queue_states(job_ids: set[str]) -> dict[str, dict[str, str]]:
    """The states squeue gives these jobs (array tasks as <array id>_<task>): its own for a job it
    lists (ended ones too, until slurmctld forgets them), LEFT_QUEUE for one it does not list. {} when
    squeue cannot answer (slurmctld down, squeue missing): nothing is concluded then."""
    main_ids = sorted({job_id.split("_")[0] for job_id in job_ids})
    command = ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T", "--jobs", ",".join(main_ids)]
    try:
        found = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        log.warning("squeue failed (%s): the jobs' states are unknown for now", err)
        return {}
    if found.returncode != 0 and "Invalid job id" not in found.stderr:  # that one: none is listed any more
        log.warning("squeue failed (%s): the jobs' states are unknown for now", found.stderr.strip())
        return {}
    listed = dict(line.split("|", 1) for line in found.stdout.splitlines() if "|" in line)
    states = {}
    for job_id in job_ids:
        state = listed.get(job_id, LEFT_QUEUE)
        states[job_id] = {"State": state if state in ENDED_IN_QUEUE or state == LEFT_QUEUE else "RUNNING",
                          "QueueState": state}
    return states


@functools.cache
def queue_watcher_class():
    """QueueWatcher, made on first use: Hydra imports this module whenever it looks for plugins, and
    importing submitit then would slow every command down."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    class QueueWatcher(SlurmInfoWatcher):
        """submitit's SLURM watcher, with squeue for the states sacct does not give: every state where
        sacct is unusable, the jobs sacct does not list yet where it is. It asks at most every minute
        (submitit's own asks sacct at most every ten)."""

        def __init__(self, delay_s: int = 60) -> None:
            super().__init__(delay_s=delay_s)
            self.use_sacct = sacct_usable()
            if not self.use_sacct:
                log.info("sacct is unusable on this cluster (no accounting?): job states come from squeue")

        def update(self) -> None:
            # Private reach: submitit's InfoWatcher keeps its job sets and state cache in private
            # attributes with no public setter, and is_done() reads that cache: squeue's states must
            # go into it, and the finished set be updated as the base update() does.
            if self.use_sacct:
                super().update()
            unknown = {job_id for job_id in self._registered - self._finished
                       if self._info_dict.get(job_id, {}).get("State") in (None, "", "UNKNOWN")
                       or "QueueState" in self._info_dict.get(job_id, {})}
            if unknown:
                self._info_dict.update(queue_states(unknown))
            self._last_status_check = time.time()
            for job_id in self._registered - self._finished:
                if self.is_done(job_id, mode="cache"):
                    self._finished.add(job_id)

    return QueueWatcher
