"""Hydra's joblib and submitit launchers, made to survive a job that is killed from outside.

Hydra's own launchers end the whole multirun when one job dies without returning: joblib raises
TerminatedWorkerError when a worker process is killed (the other jobs are aborted, the rest never
start), and submitit raises UncompletedJobError for a job SLURM killed (scancel, an OOM kill, a node
failure) or, on the local executor, a job process killed with a signal. Either way the sweep summary
never prints and the killed run is left `running`.

These subclasses (conf/launcher/{joblib,submitit_local,slurm}.yaml select them; Hydra accepts launchers only from
the hydra_plugins namespace, hence this package) record such a job as
failed in its job.json and run.json, return it to Hydra as a failed job, and let the rest of the sweep
run to its summary. A rerun of the sweep resumes the killed run from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_joblib_launcher import _core as joblib_core
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher as HydraJoblibLauncher
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as hydra_submitit

from omegaconf import OmegaConf

from hardsamples import records
from hardsamples.errors import ConfigError
from hardsamples.record_schema import OVER
from hardsamples.sweep import JobNote

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
        resolved = {key: OmegaConf.to_container(config[key], resolve=True) if OmegaConf.is_config(config[key])
                    else config[key] for key in config if key != "hydra"}
        return resolved, run_dir
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
        old = records.previous_run(run_dir, config)
        if old is None or old["status"] not in OVER:
            return None
        records.check_complete(run_dir, old)
    except (ConfigError, OSError):
        return None
    return run_dir


def note_skipped(run_dir: Path, job_num: int) -> bool:
    """job.json says `skipped` for a run over before its sweep started (counted by the summary)."""
    try:
        with records.hold_run_dir(run_dir) as writable:
            if writable:
                JobNote(run_dir, job_num).close("skipped")
            return writable
    except ConfigError:  # held by another process: let a job look at it
        return False


def note_attempt(run_dir: Path | None) -> str | None:
    try:
        return records.read_json(run_dir / "job.json").get("attempt") if run_dir else None
    except (OSError, ValueError, AttributeError):
        return None


def record_killed(run_dir: Path | None, job_num: int, error: str) -> None:
    """Mark a job that died without a word as failed: job.json and a run.json still `running`. Left
    alone when another process holds the run directory (e.g. the job was requeued and runs again)."""
    if run_dir is None or not run_dir.is_dir():
        return
    try:
        with records.hold_run_dir(run_dir) as writable:
            if not writable:
                return
            note_path = run_dir / "job.json"
            try:
                note = records.read_json(note_path)
            except (OSError, ValueError):
                note = {"attempt": None, "job_num": job_num, "started_at": None}
            if not isinstance(note, dict) or note.get("outcome") in (None, "running"):
                note = note if isinstance(note, dict) else {}
                note.update(outcome="failed", error=error, ended_at=time.time())
                records.write_json(note_path, note)
            run_json = run_dir / "run.json"
            try:
                header = records.read_json(run_json)
            except (OSError, ValueError):
                return
            if isinstance(header, dict) and header.get("status") == "running":
                header.update(status="interrupted", error=error)  # killed from outside: a rerun resumes it
                records.write_json(run_json, header)
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
    and the jobs not yet started run in a fresh pool."""

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
                        record_killed(run_dirs[i], initial_job_idx + i, error)
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

        def map_array(executor, fn, *iterables):
            jobs = real_map_array(executor, fn, *iterables)
            collected.extend(jobs)
            return [_Deferred(job) for job in jobs]

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
            run_dir = job_run_dir(self, overrides)
            error = (f"{type(item).__name__}: the {self._EXECUTOR} job ended without a result (killed by the"
                     f" launcher, SLURM or a signal?): {str(item).splitlines()[0] if str(item) else ''}").rstrip(": ")
            log.error("job %d (%s) %s", initial_job_idx + i, run_dir.name if run_dir else "?", error)
            record_killed(run_dir, initial_job_idx + i, error + "; rerun the sweep to resume it")
            results.append(failed_return(overrides))
        return results


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
    pass
