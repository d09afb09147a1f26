"""Several jobs on one GPU: the joblib launcher's jobs_per_gpu, each job pinned to a GPU slot."""

from __future__ import annotations

import fcntl
import json

import pytest

from conftest import TINY, run_cli
from hardsamples.sweep import gpus

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture
def two_fake_gpus(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("HARDSAMPLES_GPU_LOCKS", str(tmp_path))
    monkeypatch.setattr(gpus, "_claimed_lock", None)
    held = []

    def hold(name: str) -> None:
        """Another process holds this lock file."""
        handle = open(tmp_path / name, "w")
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.append(handle)

    yield hold
    for handle in held:
        handle.close()


def claim_afresh(job_num: int, jobs_per_gpu: int) -> str | None:
    """The GPU a new job process would claim (one claim per process), let go at once."""
    gpus._claimed_lock = None
    gpus.os.environ["CUDA_VISIBLE_DEVICES"] = "0,1"
    gpu = gpus.claim_gpu(job_num, jobs_per_gpu)
    if gpus._claimed_lock is not None:
        gpus._claimed_lock.close()
        gpus._claimed_lock = None
    return gpu


def test_every_gpu_gets_a_job_before_any_gets_a_second(two_fake_gpus):
    assert claim_afresh(job_num=0, jobs_per_gpu=2) == "0"
    two_fake_gpus("gpu-0.lock")
    assert claim_afresh(job_num=0, jobs_per_gpu=2) == "1"  # GPU 0 busy: GPU 1's first slot, not 0's second
    two_fake_gpus("gpu-1.lock")
    assert claim_afresh(job_num=1, jobs_per_gpu=2) == "1"  # every first slot held: a second slot
    two_fake_gpus("gpu-1.slot1.lock")
    assert claim_afresh(job_num=1, jobs_per_gpu=2) == "0"
    two_fake_gpus("gpu-0.slot1.lock")
    assert claim_afresh(job_num=3, jobs_per_gpu=2) == "1"  # all 4 slots held: share, by job number (3 mod 2)
    assert claim_afresh(job_num=0, jobs_per_gpu=1) == "0"  # one job per GPU: only the first slots count


def test_joblib_runs_jobs_per_gpu_times_the_visible_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert gpus.gpu_job_slots(4, 2) == 8 and gpus.gpu_job_slots(1, 2) == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU: the CPU's own number of jobs, whatever k
    assert gpus.gpu_job_slots(1, 2) == 2 and gpus.gpu_job_slots(8, 2) == 2


def sharing_sweep(cwd, jobs_per_gpu: str, seeds: str, visible: str):
    return run_cli(["-m", "experiment=demo", *TINY, "epochs=30", "delta=1.0", f"seed={seeds}", "sweep_name=shared",
                    "launcher=joblib", f"hydra.launcher.jobs_per_gpu={jobs_per_gpu}"], cwd=cwd,
                   env={**ONE_THREAD, "CUDA_VISIBLE_DEVICES": visible, "HARDSAMPLES_GPU_LOCKS": str(cwd / "locks")})


@pytest.mark.slow
def test_two_jobs_share_the_one_gpu(tmp_path):
    """One GPU named (none present here: the jobs train on the CPU): jobs_per_gpu=2 makes two workers,
    and both jobs run at once on that one device. Each job trains for about 6 s (epochs=30): the two
    workers start their jobs a few hundredths of a second apart, but on a loaded CI machine one worker's
    start once lagged by more than a one-epoch job (0.4 s), which then ended before the other began."""
    result = sharing_sweep(tmp_path, "2", "0,1", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr and "2 finished" in result.stdout
    notes = [json.loads(p.read_text()) for p in (tmp_path / "results/runs/shared").glob("*/job.json")]
    assert [note["cuda_visible_devices"] for note in notes] == ["0", "0"]
    first, second = sorted(notes, key=lambda note: note["started_at"])
    assert first["pid"] != second["pid"] and first["ended_at"] > second["started_at"], "not at the same time"


@pytest.mark.parametrize("value", [0, -1, True])
def test_a_bad_jobs_per_gpu_is_one_line(value, capsys):
    from hydra_plugins.hardsamples_launchers.launchers import JoblibLauncher

    with pytest.raises(SystemExit) as stopped:
        JoblibLauncher(jobs_per_gpu=value, n_jobs=2)
    lines = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and len(lines) == 1
    assert lines[0].startswith(f"error: hydra.launcher.jobs_per_gpu={value} must be a whole number >= 1")
    assert JoblibLauncher(jobs_per_gpu=3, n_jobs=2).joblib == {"n_jobs": 2}  # never passed on to joblib
