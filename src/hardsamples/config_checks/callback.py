"""Hydra's callback (conf/config.yaml): the checks made once Hydra has composed the config and before it
writes anything into the output directory, so bad input costs one line and leaves no directory behind."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hydra.experimental.callback import Callback

from hardsamples.config_checks import refuse
from hardsamples.config_checks.command_line import added_key_error
from hardsamples.config_checks.settings import check_settings
from hardsamples.errors import ConfigError
from hardsamples.record_files import check_not_a_file


class ConfigCheck(Callback):
    """Hydra callback (conf/config.yaml): checks made before Hydra writes anything into the output
    directory, so a bad command line costs one line and leaves no directory behind."""

    def on_run_start(self, config, **kwargs) -> None:
        if (error := added_key_error(config)) is not None:
            refuse(error)
        run_dir = Path(str(config.hydra.run.dir))
        try:
            check_not_a_file(run_dir)
            check_settings(config)
        except ConfigError as err:
            refuse(str(err))
        for error in (cannot_make(run_dir, "run directory", "run_name= / sweep_name="), disk_full(run_dir)):
            if error is not None:
                refuse(error)  # Hydra makes the directory before the run starts: its traceback otherwise

    def on_multirun_start(self, config, **kwargs) -> None:
        if (error := added_key_error(config)) is not None:
            refuse(error)
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if sweep_dir.exists() and not sweep_dir.is_dir():
            refuse(f"the sweep directory {sweep_dir} is a file: delete or move that file, or pass another sweep_name=")
        if sweep_dir.is_dir() and not os.access(sweep_dir, os.W_OK):  # Hydra writes multirun.yaml there first
            refuse(f"the sweep directory {sweep_dir} is not writable: make it writable, or pass sweep_name=<new sweep>"
                   " to write the sweep elsewhere")
        for error in (cannot_make(sweep_dir, "sweep directory", "sweep_name="), disk_full(sweep_dir),
                      launcher_error(config)):
            if error is not None:
                refuse(error)


def nearest_existing(directory: Path) -> Path:
    """directory itself, or the closest of its parents that exists (what Hydra's mkdir meets first)."""
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return directory


def cannot_make(directory: Path, what: str, elsewhere: str) -> str | None:
    """Why a directory that does not exist yet cannot be made (a file, or a read-only folder, where a parent
    should be), or None."""
    existing = nearest_existing(directory)
    if existing == directory:
        return None
    if not existing.is_dir():
        return (f"the {what} {directory} cannot be made: {existing} is a file: delete or move that file, or pass"
                f" another {elsewhere}")
    if not os.access(existing, os.W_OK | os.X_OK):
        return (f"the {what} {directory} cannot be made: {existing} is not writable: make it writable, or pass"
                f" another {elsewhere}")
    return None


MIN_FREE_BYTES = 1 << 20  # less than this cannot hold even a run's first record (Hydra's multirun.yaml, run.json)


def disk_full(directory: Path) -> str | None:
    """A disk (or quota) already full where the run or sweep would write: refused before Hydra writes its first
    file there (its traceback otherwise). A disk that fills up later is each run's to report (train.py)."""
    existing = nearest_existing(directory)
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return None
    if free >= MIN_FREE_BYTES:
        return None
    return (f"no space left where {directory} would be written ({free // 1024} KiB free on the disk of {existing}):"
            " free space there, or pass another sweep_name= / hydra.run.dir= to write elsewhere")


def launcher_error(config) -> str | None:
    """A launcher that cannot start: joblib with n_jobs=0 (or not a whole number), SLURM where sbatch is not
    installed. Hydra's answer to both is a traceback once the sweep has begun."""
    launcher = config.hydra.launcher
    target = str(launcher.get("_target_", ""))
    if "Joblib" in target:
        n_jobs = launcher.get("n_jobs")
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0:
            return (f"hydra.launcher.n_jobs={n_jobs} is not a number of jobs: use a whole number >= 1 (or -1 for"
                    " one per CPU), e.g. hydra.launcher.n_jobs=2")
    if "SlurmLauncher" in target and shutil.which("sbatch") is None:
        return ("launcher=slurm needs SLURM's sbatch, which is not on PATH here: run the sweep on a SLURM login"
                " node, or use launcher=joblib (this machine) or launcher=submitit_local")
    return None
