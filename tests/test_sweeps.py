"""Sweeps through Hydra multirun: every launcher, safe reruns, a failing job, GPU claims, the sweep files.

The sweeps run the real CLI in a temporary directory (results/runs/<sweep>/ lands there), with the
demo grid narrowed by overrides to two tiny jobs. OMP_NUM_THREADS=1 keeps each process to one
thread: on a busy 2-core machine two OpenMP threads per process are several times slower.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from conftest import CONF, TINY, run_cli
from hardsamples.sweep import gpus

# Most tests here train sweeps in subprocesses: `make test-fast` leaves the module out.
pytestmark = pytest.mark.slow

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TWO_JOBS = ["epochs=2", "delta=1.0,0.5", "seed=0"]


def sweep(cwd: Path, *args: str, env: dict | None = None):
    return run_cli(["-m", "experiment=demo", *TINY, *args],
                   cwd=cwd, env={**ONE_THREAD, **(env or {})})


def run_dirs(cwd: Path, sweep_name: str) -> dict[str, Path]:
    return {p.name: p for p in sorted((cwd / "results" / "runs" / sweep_name).iterdir())
            if p.is_dir() and not p.name.startswith(".")}


def output(result) -> str:
    return result.stdout + result.stderr


def summary_line(result) -> str:
    lines = [line for line in result.stdout.splitlines() if line.startswith("sweep ")]
    assert lines, result.stdout[-2000:] + result.stderr[-2000:]
    return lines[-1]


def assert_finished(run_dir: Path, epochs: int) -> None:
    header = json.loads((run_dir / "run.json").read_text())
    assert header["status"] == "finished", header["error"]
    assert header["sweep"] == run_dir.parent.name and header["config"]["sweep_name"] == run_dir.parent.name
    assert len(pd.read_csv(run_dir / "metrics.csv")) == epochs


BASIC_JOBS = ["epochs=2", "delta=1.5,1.0,0.5", "seed=0", "sweep_name=basic"]
FAILED = "test_resnet-synthetic-hard_batches-d1.5-s0"
FINISHED = ["test_resnet-synthetic-hard_batches-d0.5-s0", "test_resnet-synthetic-hard_batches-d1.0-s0"]


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory):
    """Three jobs one after another; the first fails (delta 1.5 is out of range), the other two must still run."""
    cwd = tmp_path_factory.mktemp("basic")
    return cwd, sweep(cwd, *BASIC_JOBS)


def test_basic_launcher_runs_each_job_to_a_finished_record(basic_sweep):
    cwd, result = basic_sweep
    runs = run_dirs(cwd, "basic")
    assert sorted(runs) == sorted([FAILED, *FINISHED])
    for name in FINISHED:
        assert_finished(runs[name], epochs=2)
        assert json.loads((runs[name] / "job.json").read_text())["outcome"] == "finished"
    assert output(result).count("interval 2/2") == 2  # one progress line per interval and run
    for name in FINISHED:  # per-cell means after the counts: here one seed per cell
        header = json.loads((runs[name] / "run.json").read_text())
        top1 = pd.read_csv(runs[name] / "metrics.csv")["test_top1"].iloc[-1]
        assert (f"    test_resnet synthetic {header['method']} d{header['delta']} paper_code E2 B64 16px: 1 run(s),"
                f" test top-1 {top1:.2f}, train loss ") in result.stdout


def test_a_failing_job_leaves_the_others_running_and_the_sweep_exits_non_zero(basic_sweep):
    cwd, result = basic_sweep
    assert result.returncode == 1, result.stderr[-3000:]
    assert summary_line(result).startswith("sweep results/runs/basic: 3 jobs in ")
    assert summary_line(result).endswith(": 2 finished, 0 resumed, 0 skipped, 0 diverged, 1 failed")
    assert f"failed    {FAILED}: ConfigError: delta=1.5 is outside (0, 1]" in result.stdout
    failed = json.loads((run_dirs(cwd, "basic")[FAILED] / "job.json").read_text())
    assert failed["outcome"] == "failed" and failed["error"].startswith("ConfigError: delta=1.5")
    assert failed["job_num"] == 0  # the first job failed and the next two still ran


def test_rerunning_a_finished_sweep_trains_nothing_and_adds_no_rows(basic_sweep):
    cwd, _ = basic_sweep
    runs = run_dirs(cwd, "basic")
    before = {name: {f.name: f.read_bytes() for f in d.iterdir() if f.suffix in (".csv", ".pt")}
              for name, d in runs.items()}
    result = sweep(cwd, *BASIC_JOBS)
    assert result.returncode == 1, result.stderr[-3000:]  # the bad grid point fails again
    assert summary_line(result).endswith(": 0 finished, 0 resumed, 2 skipped, 0 diverged, 1 failed")
    assert "interval" not in output(result) and "already finished, nothing to do" in output(result)
    for name, d in runs.items():
        assert {f.name: f.read_bytes() for f in d.iterdir() if f.suffix in (".csv", ".pt")} == before[name]
    for name in FINISHED:
        assert json.loads((runs[name] / "run.json").read_text())["resumed_from"] == []


@pytest.mark.parametrize("where", ["after the overrides", "between them"])
def test_the_multirun_flag_may_come_anywhere_on_the_command_line(basic_sweep, where):
    """argparse would read `epochs=2 -m seed=0` as overrides, a flag, then an unrecognized argument."""
    cwd, _ = basic_sweep
    args = ["experiment=demo", *TINY, *BASIC_JOBS]
    args = [*args, "-m"] if where == "after the overrides" else [*args[:2], "--multirun", *args[2:]]
    result = run_cli(args, cwd=cwd, env=ONE_THREAD)
    assert "unrecognized arguments" not in result.stderr, result.stderr[-2000:]
    assert summary_line(result).endswith(": 0 finished, 0 resumed, 2 skipped, 0 diverged, 1 failed")


def test_joblib_launcher_runs_jobs_in_worker_processes_each_with_its_own_gpu(tmp_path):
    # Two GPUs named but none present: each worker claims one (the job then runs on the CPU).
    result = sweep(tmp_path, *TWO_JOBS, "sweep_name=joblib", "launcher=joblib", "hydra.launcher.n_jobs=2",
                   env={"CUDA_VISIBLE_DEVICES": "0,1", "HARDSAMPLES_GPU_LOCKS": str(tmp_path / "locks")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in output(result)
    assert "2 finished" in summary_line(result)
    notes = []
    for run_dir in run_dirs(tmp_path, "joblib").values():
        assert_finished(run_dir, epochs=2)
        notes.append(json.loads((run_dir / "job.json").read_text()))
    assert all(note["cuda_visible_devices"] in ("0", "1") for note in notes)
    if notes[0]["pid"] != notes[1]["pid"]:  # two workers hold two different GPUs
        assert notes[0]["cuda_visible_devices"] != notes[1]["cuda_visible_devices"]


def test_submitit_local_runs_jobs_and_requeues_a_preempted_one_which_resumes(tmp_path):
    """The SLURM path without a cluster: submitit's local executor handles USR2 as SLURM does (the
    pre-emption and time-limit warning): it calls the launcher's checkpoint(), requeues the job, and
    the job resumes from the run's last checkpoint."""
    command = [sys.executable, "-m", "hardsamples.train", "-m", "experiment=demo", *TINY,
               "epochs=4", "delta=1.0,0.5", "seed=0", "sweep_name=submitit", "launcher=submitit_local"]
    proc = subprocess.Popen(command, cwd=tmp_path, env={**os.environ, **ONE_THREAD}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    victim = tmp_path / "results/runs/submitit/test_resnet-synthetic-hard_batches-d0.5-s0"
    deadline = time.monotonic() + 240
    while not (victim / "checkpoint.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    os.kill(json.loads((victim / "job.json").read_text())["pid"], signal.SIGUSR2)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert "1 finished, 1 resumed, 0 skipped, 0 diverged, 0 failed" in out
    for run_dir in run_dirs(tmp_path, "submitit").values():
        assert_finished(run_dir, epochs=4)
    assert json.loads((victim / "run.json").read_text())["resumed_from"] != []
    log = "".join(p.read_text() for p in (tmp_path / "results/runs/submitit/.submitit").glob("*/*_log.out"))
    assert "this job is preempted" in log and "Requeued job" in log
    # Run again: every run is over, so no job is submitted at all, and the summary still counts both.
    jobs = set((tmp_path / "results/runs/submitit/.submitit").iterdir())
    again = subprocess.run(command, cwd=tmp_path, env={**os.environ, **ONE_THREAD}, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 finished, 0 resumed, 2 skipped, 0 diverged, 0 failed" in again.stdout
    assert set((tmp_path / "results/runs/submitit/.submitit").iterdir()) == jobs, "a job was submitted"


def compose_sweep(name: str, overrides: list[str]):
    """As `experiment=<name>` composes it: a grid of sweeps/ on top of conf/config.yaml."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[f"experiment={name}", *overrides], return_hydra_config=True)


def test_slurm_launcher_composes_with_its_defaults_and_overrides():
    cfg = compose_sweep("table3", ["launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=60"])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hardsamples_launchers.launchers.SlurmLauncher"  # submitit's, surviving a killed job
    assert (launcher.partition, launcher.timeout_min, launcher.gres, launcher.gpus_per_node) == ("gpu", 60, "gpu:1", None)
    assert launcher.cpus_per_task >= 1 and launcher.mem_gb >= 1 and launcher.signal_delay_s > 0
    assert launcher.max_num_timeout > 0, "a job that hits its time limit must be requeued"
    assert launcher.submitit_folder == "results/runs/table3/.submitit/%j"  # job logs beside the runs
    assert cfg.sweep_name == "table3" and cfg.dataset.name == "cifar10"


class Submitted(Exception):
    pass


def test_slurm_launcher_writes_the_sbatch_script_we_mean(tmp_path, monkeypatch):
    """No cluster here: the plugin runs up to the point where it would call sbatch, and the script
    it would submit is checked."""
    from submitit.slurm.slurm import SlurmExecutor

    scripts = []

    def capture(executor, command):
        scripts.append(executor._make_submission_file_text(command, "uid"))
        raise Submitted

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # as if srun were there
    monkeypatch.setattr(SlurmExecutor, "_submit_command", capture)
    cfg = compose_sweep("table3", ["launcher=slurm", "hydra.launcher.partition=gpu"])
    plugin = instantiate(cfg.hydra.launcher)
    plugin.config = cfg
    with pytest.raises(Submitted):
        plugin.launch([["seed=0"], ["seed=1"]], initial_job_idx=0)
    script = scripts[0]
    assert "--gpus-per-node" not in script  # gres works without select/cons_tres
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=240", "#SBATCH --gres=gpu:1",
                 "#SBATCH --cpus-per-task=4", "#SBATCH --mem=16GB", "#SBATCH --requeue",
                 "#SBATCH --signal=USR2@120", "#SBATCH --array=0-1%2", "#SBATCH --job-name=table3"):
        assert line in script, line
    # submitit calls the launcher's checkpoint() on USR2 and requeues what it returns: the same job.
    assert callable(plugin.checkpoint)


@pytest.mark.parametrize("launcher,target", [
    ("local", "BasicLauncher"), ("joblib", "JoblibLauncher"), ("submitit_local", "LocalLauncher")])
def test_every_launcher_choice_composes(launcher, target):
    cfg = compose_sweep("demo", [f"launcher={launcher}"])
    assert cfg.hydra.launcher._target_.endswith(target)
    assert cfg.hydra.callbacks.sweep_summary._target_ == "hardsamples.sweep.SweepSummary"


@pytest.mark.parametrize("name,dataset,runs", [
    ("demo", "digits", 12), ("table3", "cifar10", 60), ("table4", "cifar100", 60), ("table5", "stl10", 60),
    ("timing", "cifar10", 4)])
def test_sweep_files_hold_the_paper_grids(name, dataset, runs):
    cfg = compose_sweep(name, [])
    params = cfg.hydra.sweeper.params
    assert cfg.sweep_name == name and cfg.dataset.name == dataset
    assert cfg.hydra.sweep.dir == f"results/runs/{name}" and cfg.hydra.sweep.subdir == cfg.run_name
    assert [float(d) for d in params.delta.split(",")] == [1.0, 0.8, 0.5, 0.2]
    assert math.prod(len(str(values).split(",")) for values in params.values()) == runs
    if name.startswith("table"):
        assert params.model.split(",") == ["resnet18", "resnet50", "efficientnet_b4", "efficientnetv2_s",
                                           "mobilenetv3_small_100"]
        assert (cfg.epochs, cfg.batch_size, cfg.image_size, cfg.fidelity.name) == (100, 512, 128, "paper_code")
        assert params.seed == "0,1,2"


def test_timing_sweep_runs_on_synthetic_images_in_cifar10_shape():
    cfg = compose_sweep("timing", ["dataset=synthetic"])
    assert cfg.model.name == "resnet18" and (cfg.batch_size, cfg.image_size) == (512, 128)
    assert (cfg.dataset.num_train, cfg.dataset.num_test, cfg.dataset.num_classes) == (50000, 10000, 10)
    assert (cfg.dataset.native_size, cfg.dataset.channels) == (32, 3)
    assert 200 <= cfg.epochs * (50000 // 512) <= 500  # a few hundred updates per delta


@pytest.fixture
def fake_gpus(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    monkeypatch.setenv("HARDSAMPLES_GPU_LOCKS", str(tmp_path))
    monkeypatch.setattr(gpus, "_claimed_lock", None)
    yield tmp_path
    if gpus._claimed_lock is not None:
        gpus._claimed_lock.close()


def test_a_job_claims_the_first_free_gpu_from_its_job_number(fake_gpus):
    held = open(fake_gpus / "gpu-1.lock", "w")  # another process holds GPU 1
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert gpus.claim_gpu(job_num=4) == "2"  # 4 mod 3 = 1 is held: the next one
    assert gpus.os.environ["CUDA_VISIBLE_DEVICES"] == "2"
    assert gpus.claim_gpu(job_num=0) is None  # the process keeps its GPU for later jobs
    held.close()


def test_one_visible_gpu_is_left_alone(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setattr(gpus, "_claimed_lock", None)
    assert gpus.claim_gpu(job_num=5) is None and gpus.os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert gpus.gpu_count_or(2) == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpus.gpu_count_or(2) == 2
