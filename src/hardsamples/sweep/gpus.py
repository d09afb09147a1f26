"""The GPU a sweep job claims: one of the visible GPUs (or one of a GPU's jobs_per_gpu slots), by flock.

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
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

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


def lock_dir() -> Path:
    """Where the lock files of GPU claims and progress bars live: per user, shared by every sweep on this machine."""
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
