"""The SLURM path: jobs that die without a result, and sweeps whose jobs do not get the launching
process's environment.

Most tests run submitit's local executor, the SLURM launcher's twin (same pickled submissions, same
job folders). The two that need SLURM itself (job states without accounting, sbatch --export=NONE)
run on a real cluster and are skipped where `sinfo` is absent; tools/slurm_single_node.sh makes a
one-node cluster on a Debian machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TINY
from hardsamples.sweep.naming import SWEPT_ENV

pytestmark = pytest.mark.slow  # every test starts sweeps in subprocesses

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
LR_SWEEP = ["epochs=1", "delta=1.0", "seed=0", "optimizer.lr=0.005,0.05"]


def sweep_command(launcher: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "hardsamples.train", "-m", "experiment=demo", *TINY, f"launcher={launcher}", *args]


def start_sweep(cwd: Path, launcher: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(sweep_command(launcher, *args), cwd=cwd, env={**os.environ, **ONE_THREAD},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def summary_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("sweep ")]
    assert lines, out[-3000:]
    return lines[-1]


def run_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def job_processes(folder: Path) -> list[int]:
    """The pids of submitit job processes (`python -m submitit.core._submit <folder>/...`) under folder."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in cmdline and any(str(folder).encode() in part for part in cmdline):
            pids.append(int(proc.name))
    return pids


def kill_first_job_at_start(proc: subprocess.Popen, folder: Path) -> None:
    """SIGKILL the first job process as soon as it exists: it is still importing torch, long before it
    composes its config and makes its run directory."""
    deadline = time.monotonic() + 120
    while not (pids := job_processes(folder)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.01)
    os.kill(pids[0], signal.SIGKILL)


def test_a_job_killed_before_it_makes_its_run_directory_is_counted_failed_again_on_a_rerun(tmp_path):
    """A job that dies before it writes anything (cancelled while pending, a node whose environment
    cannot start Python) used to leave no note: the summary counted only the other job and the sweep
    exited 0. Its run directory now gets a failed job.json; on a rerun where it dies again, the note
    of the first sweep is not taken for this one's."""
    sweep_dir = tmp_path / "results/runs/early"
    for attempt in range(2):
        proc = start_sweep(tmp_path, "submitit_local", "epochs=2", "delta=1.0,0.5", "seed=0", "sweep_name=early")
        kill_first_job_at_start(proc, sweep_dir / ".submitit")
        out, _ = proc.communicate(timeout=400)
        assert proc.returncode == 1, out[-3000:]
        finished = "1 finished" if attempt == 0 else "0 finished"  # the other run is over: skipped on the rerun
        assert summary_line(out).endswith(f"{finished}, 0 resumed, {attempt} skipped, 0 diverged, 1 failed"), out[-3000:]
        notes = {run_dir.name: json.loads((run_dir / "job.json").read_text()) for run_dir in run_dirs(sweep_dir)}
        killed = [name for name, note in notes.items() if note["outcome"] == "failed"]
        assert len(killed) == 1 and not (sweep_dir / killed[0] / "run.json").exists(), notes
        assert "ended without a result" in notes[killed[0]]["error"]
        assert f"failed    {killed[0]}: " in out


def test_submitted_jobs_carry_the_swept_keys_in_their_own_config(tmp_path):
    """A sweep over a key outside the run name gives every value a directory with a config hash. The
    job learns the swept keys from its pickled config, not from the launching process's environment,
    which SLURM does not pass on under --export=NONE: loaded in a process without that environment,
    each submitted job resolves the very directory its job trained in."""
    result = subprocess.run(sweep_command("submitit_local", *LR_SWEEP, "sweep_name=lr"), cwd=tmp_path,
                            env={**os.environ, **ONE_THREAD}, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sweep_dir = tmp_path / "results/runs/lr"
    trained = [p.name for p in run_dirs(sweep_dir)]
    assert len(trained) == 2 and all(name.startswith("test_resnet-synthetic-hard_batches-d1.0-s0-")
                                     for name in trained), trained
    submissions = sorted(str(p) for p in (sweep_dir / ".submitit").glob("*/*_submitted.pkl"))
    resolve = ("import pickle, sys\n"
               "for path in sys.argv[1:]:\n"
               "    submission = pickle.load(open(path, 'rb'))\n"
               "    launcher, overrides = submission.function, submission.args[0]\n"
               "    config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)\n"
               "    print(config.hydra.sweep.subdir)\n")
    env = {key: value for key, value in os.environ.items() if key != SWEPT_ENV}
    loaded = subprocess.run([sys.executable, "-c", resolve, *submissions], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert sorted(loaded.stdout.split()) == trained


def test_the_joblib_launcher_gives_a_swept_lr_its_own_directories(tmp_path):
    """joblib's workers get the swept keys the same way: two directories with a hash each (the basic
    launcher: test_reliability's sweep over optimizer.lr)."""
    for launcher in ("joblib",):
        name = f"lr_{launcher}"
        result = subprocess.run(sweep_command(launcher, *LR_SWEEP, f"sweep_name={name}"), cwd=tmp_path,
                                env={**os.environ, **ONE_THREAD}, capture_output=True, text=True, timeout=400)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        trained = [p.name for p in run_dirs(tmp_path / "results/runs" / name)]
        assert len(trained) == 2 and all(n.startswith("test_resnet-synthetic-hard_batches-d1.0-s0-") for n in trained)


# --- on a real SLURM cluster --------------------------------------------------------------------------

def slurm_answers() -> bool:
    """sinfo and sbatch are here and a controller answers (the binaries alone, daemons stopped: no)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_slurm = pytest.mark.skipif(not slurm_answers(),
                                 reason="needs a SLURM cluster (no sinfo/sbatch, or no controller answers):"
                                        " tools/slurm_single_node.sh makes one")
# Small jobs for any cluster, GPU or not. The jobs import this checkout's code from PYTHONPATH; under
# --export=NONE they get it from the setup line instead.
ON_SLURM = ["hydra.launcher.gres=null", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
            "hydra.launcher.timeout_min=10"]
SETUP = (f"hydra.launcher.setup=['export PYTHONPATH={ROOT / 'src'}',"
         f"'export OMP_NUM_THREADS=1']")


@needs_slurm
def test_on_slurm_a_cancelled_job_is_recorded_failed_and_a_rerun_resumes_it(tmp_path):
    """Without accounting sacct never says a job ended: squeue does. The cancelled job is recorded
    failed, the summary prints beside the finished run, and a rerun resumes the killed run."""
    args = [*ON_SLURM, "epochs=300", "delta=1.0,0.5", "seed=0", "sweep_name=cancel"]
    proc = start_sweep(tmp_path, "slurm", *args)
    victim = tmp_path / "results/runs/cancel/test_resnet-synthetic-hard_batches-d0.5-s0"
    deadline = time.monotonic() + 300
    while not (victim / "checkpoint.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.1)
    job_id = json.loads((victim / "job.json").read_text())["scheduler_job_id"]
    subprocess.run(["scancel", "--signal=KILL", job_id], check=True)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, out[-3000:]
    assert summary_line(out).endswith("1 finished, 0 resumed, 0 skipped, 0 diverged, 1 failed"), out[-3000:]
    assert json.loads((victim / "run.json").read_text())["status"] == "interrupted"  # killed from outside: resumed by the rerun below
    again = start_sweep(tmp_path, "slurm", *args)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out[-3000:]
    assert summary_line(out).endswith("0 finished, 1 resumed, 1 skipped, 0 diverged, 0 failed"), out[-3000:]


@needs_slurm
def test_on_slurm_with_export_none_a_swept_lr_still_gets_two_hashed_directories(tmp_path):
    result = subprocess.run(sweep_command("slurm", *ON_SLURM, *LR_SWEEP, "sweep_name=noenv", SETUP,
                                          "+hydra.launcher.additional_parameters.export=NONE"),
                            cwd=tmp_path, env={**os.environ, **ONE_THREAD}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert summary_line(result.stdout).endswith("2 finished, 0 resumed, 0 skipped, 0 diverged, 0 failed")
    trained = run_dirs(tmp_path / "results/runs/noenv")
    assert len(trained) == 2 and all(p.name.startswith("test_resnet-synthetic-hard_batches-d1.0-s0-") for p in trained)
    assert all(json.loads((p / "run.json").read_text())["status"] == "finished" for p in trained)
