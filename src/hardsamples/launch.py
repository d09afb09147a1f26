"""What a sweep job needs from the machine it lands on: its own GPU, and a note of how it went.

Hydra's launchers start the jobs (basic: one after another in this process; joblib: worker
processes on this machine; submitit: SLURM jobs or local subprocesses). None of them gives a job its
own GPU, so each job process claims one at job start, before CUDA is initialised: the first GPU,
counting from `job number mod GPU count`, that no other process on this machine holds. The claim is
an flock on a file, held until the process exits, so a joblib worker keeps its GPU for every job it
runs, a dead worker frees it, and two sweeps on one machine do not pile onto GPU 0. When every GPU
is held the job shares the one its job number points at. Under SLURM the job sees only the GPUs it
was allocated, so with one GPU per job there is nothing to claim.

Each sweep job leaves `job.json` in its run directory: what this attempt did (running while it runs,
then finished, resumed, skipped, diverged or failed), any error, and where it ran (host, pid, GPU).
The sweep summary reads these.
"""

from __future__ import annotations

import fcntl
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path

import torch
from omegaconf import OmegaConf

from hardsamples import records

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


OmegaConf.register_new_resolver("visible_gpus_or", gpu_count_or, replace=True)


def lock_dir() -> Path:
    path = Path(os.environ.get("HARDSAMPLES_GPU_LOCKS", Path(tempfile.gettempdir()) / f"hardsamples-gpus-{os.getuid()}"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def claim_gpu(job_num: int) -> str | None:
    """Restrict this process to one GPU (CUDA_VISIBLE_DEVICES) when several are visible.

    Returns the GPU claimed now, or None when there was nothing to do: one GPU or none, CUDA already
    initialised in this process (a worker that ran an earlier job keeps that job's GPU), or a claim
    already held.
    """
    global _claimed_lock
    gpus = visible_gpus()
    if _claimed_lock is not None or len(gpus) <= 1 or torch.cuda.is_initialized():
        return None
    start, locks = job_num % len(gpus), lock_dir()
    for gpu in gpus[start:] + gpus[:start]:
        lock = open(locks / f"gpu-{gpu}.lock", "w")
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


class JobNote:
    """`job.json`: one sweep job's attempt at a run, written when the job starts and when it ends."""

    def __init__(self, run_dir: Path, job_num: int):
        self.path = Path(run_dir) / "job.json"
        self.fields = {"attempt": uuid.uuid4().hex[:12], "job_num": job_num, "outcome": None, "error": None,
                       "host": socket.gethostname(), "pid": os.getpid(),
                       "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                       "started_at": time.time(), "ended_at": None}
        records.write_json(self.path, {**self.fields, "outcome": "running"})

    def close(self, outcome: str, error: str | None = None) -> None:
        self.fields.update(outcome=outcome, error=error, ended_at=time.time())
        records.write_json(self.path, self.fields)


def read_job_notes(sweep_dir: Path) -> dict[Path, dict]:
    """Every run directory's latest job.json in a sweep directory."""
    notes = {}
    for path in sorted(Path(sweep_dir).glob("*/job.json")):
        try:
            notes[path.parent] = records.read_json(path)
        except (OSError, ValueError):
            continue  # unreadable: the summary reports what it can
    return notes
