"""Issue 13: no record is ever mixed, lost or stuck; every fault gets one line naming what to do.

Each test here failed before its fix: two writers on one run directory, a sweep over a key that is
not in the run name, broken checkpoint and run.json files, a changed record.trace on resume, a
checkpoint from another run, SIGTERM, record permissions and W&B's environment.
"""

from __future__ import annotations

import fcntl
import json
import re
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY, run_cli, train_in_process
from hardsamples.errors import ConfigError

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


def hold_lock(run_dir: Path):
    """Another process's hold on a run directory, as `hardsamples.train.run` takes it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / ".lock", "a")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


# --- (a) one writer per run directory -------------------------------------------------------------

def test_a_run_directory_in_use_is_refused_in_process(tmp_path):
    with hold_lock(tmp_path):
        with pytest.raises(ConfigError, match=r"is in use by another run .*: wait for it to end"):
            train_in_process(tmp_path, ["epochs=1"])
    assert not (tmp_path / "run.json").exists()


@pytest.mark.slow
def test_a_second_process_on_a_running_run_directory_gets_one_line_and_exit_2(tmp_path):
    first = subprocess.Popen([sys.executable, "-m", "hardsamples.train", *TINY, "epochs=30", f"hydra.run.dir={tmp_path}"],
                             env={**os.environ, **ONE_THREAD}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run.json").exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        line = one_error_line(run_cli([*TINY, "epochs=30", f"hydra.run.dir={tmp_path}"], env=ONE_THREAD))
        assert "is in use by another run" in line
        assert first.poll() is None  # the first run goes on untouched
    finally:
        first.kill()
        first.wait()


def sweep(cwd: Path, *args: str):
    return run_cli(["-m", "experiment=demo", *TINY, "launcher=local", *args],
                   cwd=cwd, env=ONE_THREAD)


def summary_line(result) -> str:
    lines = [line for line in result.stdout.splitlines() if line.startswith("sweep ")]
    assert lines, result.stdout[-2000:] + result.stderr[-2000:]
    return lines[-1]


@pytest.mark.slow
def test_a_sweep_job_on_a_directory_in_use_is_recorded_failed_and_the_rest_goes_on(tmp_path):
    busy = tmp_path / "results/runs/locked/test_resnet-synthetic-hard_batches-d0.5-s0"
    with hold_lock(busy):
        result = sweep(tmp_path, "epochs=1", "delta=1.0,0.5", "seed=0", "sweep_name=locked")
    assert result.returncode == 1, result.stderr[-3000:]
    assert summary_line(result).endswith(": 1 finished, 0 resumed, 0 skipped, 0 diverged, 1 failed")
    assert "is in use by another run" in result.stdout
    assert not (busy / "run.json").exists()


# --- (b) every distinct config its own directory ------------------------------------------------

@pytest.mark.slow
def test_a_sweep_over_a_key_outside_the_run_name_gives_every_value_its_own_directory(tmp_path):
    result = sweep(tmp_path, "epochs=1", "delta=1.0", "seed=0", "optimizer.lr=0.005,0.05", "sweep_name=lr")
    assert result.returncode == 0, result.stderr[-3000:]
    assert ": 2 jobs in " in summary_line(result) and "2 finished" in summary_line(result)
    runs = sorted(p for p in (tmp_path / "results/runs/lr").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(runs) == 2
    lrs = set()
    for run_dir in runs:
        assert run_dir.name.startswith("test_resnet-synthetic-hard_batches-d1.0-s0-")
        header = json.loads((run_dir / "run.json").read_text())
        assert header["status"] == "finished"
        lrs.add(header["config"]["optimizer"]["lr"])
    assert lrs == {0.005, 0.05}
    for lr in lrs:  # the summary's cells keep the two learning rates apart (cells.py)
        assert f" E1 B64 16px optimizer.lr={lr}: 1 run(s), test top-1 " in result.stdout
    # A rerun finds each config in its own directory again.
    again = sweep(tmp_path, "epochs=1", "delta=1.0", "seed=0", "optimizer.lr=0.005,0.05", "sweep_name=lr")
    assert again.returncode == 0 and summary_line(again).endswith(": 0 finished, 0 resumed, 2 skipped, 0 diverged, 0 failed")


def test_run_names_of_sweeps_over_name_keys_stay_as_they_were():
    from hardsamples.sweep.naming import run_dir_name
    config = {"run_name": "resnet18-cifar10-hard_batches-d0.2-s0", "delta": 0.2, "optimizer": {"lr": 0.005}}
    assert run_dir_name(config, swept=["delta", "seed", "model", "method", "dataset"]) == config["run_name"]
    named = run_dir_name(config, swept=["optimizer.lr", "delta"])
    assert named.startswith(config["run_name"] + "-") and named == run_dir_name(dict(config), swept=["optimizer.lr"])
    assert named != run_dir_name({**config, "optimizer": {"lr": 0.05}}, swept=["optimizer.lr"])


# --- (c) no run stuck behind a traceback ------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished two-epoch run, copied by each test that breaks something in it."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert train_in_process(run_dir, ["epochs=2", "record.keep_checkpoint=true"]) == "finished"
    return run_dir


def interrupted_copy(finished_run: Path, tmp_path: Path) -> Path:
    """The finished run as a kill after its last checkpoint would leave it: status running."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    header = json.loads((run_dir / "run.json").read_text())
    header["status"] = "running"
    (run_dir / "run.json").write_text(json.dumps(header))
    return run_dir


BROKEN_FILES = {
    "empty checkpoint": ("checkpoint.pt", lambda b: b""),
    "truncated checkpoint": ("checkpoint.pt", lambda b: b[: len(b) // 2]),
    "random-bytes checkpoint": ("checkpoint.pt", lambda b: os.urandom(4096)),
    "empty run.json": ("run.json", lambda b: b""),
    "truncated run.json": ("run.json", lambda b: b[: len(b) // 2]),
    "run.json a list": ("run.json", lambda b: b"[1, 2]"),
    "run.json without a status": ("run.json", lambda b: b'{"config": {}}'),
}


@pytest.mark.parametrize("name,breakage", BROKEN_FILES.values(), ids=BROKEN_FILES.keys())
def test_a_broken_record_file_gives_one_line_naming_what_to_delete(finished_run, tmp_path, name, breakage):
    run_dir = interrupted_copy(finished_run, tmp_path)
    path = run_dir / name
    path.write_bytes(breakage(path.read_bytes()))
    with pytest.raises(ConfigError, match=rf"{name} .*cannot be (read|used).*: delete ") as err:
        train_in_process(run_dir, ["epochs=2"])
    assert "\n" not in str(err.value) and str(run_dir) in str(err.value)


def test_a_broken_checkpoint_on_the_command_line_is_one_line_and_exit_2(finished_run, tmp_path):
    run_dir = interrupted_copy(finished_run, tmp_path)
    (run_dir / "checkpoint.pt").write_bytes(b"\x00" * 100)
    line = one_error_line(run_cli([*TINY, "epochs=2", f"hydra.run.dir={run_dir}"], env=ONE_THREAD))
    assert "checkpoint.pt" in line and "delete" in line


def test_a_resume_removes_temporary_files_left_by_a_kill_during_a_write(finished_run, tmp_path):
    run_dir = interrupted_copy(finished_run, tmp_path)
    for name in (".checkpoint.pt.k1l2m3", ".metrics.csv.abcdef", ".run.json.x9y8z7"):
        (run_dir / name).write_bytes(b"half a file")
    assert train_in_process(run_dir, ["epochs=2"]) == "finished"
    assert not list(run_dir.glob(".checkpoint.pt.*")) and not list(run_dir.glob(".metrics.csv.*"))
    assert not list(run_dir.glob(".run.json.*"))


@pytest.mark.parametrize("damage", ["missing", "empty", "one row short"])
def test_a_finished_run_whose_metrics_are_damaged_is_not_skipped_as_finished(finished_run, tmp_path, damage):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    metrics = run_dir / "metrics.csv"
    if damage == "missing":
        metrics.unlink()
    elif damage == "empty":
        metrics.write_text("")
    else:
        metrics.write_text("\n".join(metrics.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(ConfigError, match=r"metrics\.csv .*: delete .*") as err:
        train_in_process(run_dir, ["epochs=2"])
    assert str(run_dir) in str(err.value)


def test_changing_record_trace_between_an_interrupted_run_and_its_rerun_is_refused(finished_run, tmp_path):
    run_dir = interrupted_copy(finished_run, tmp_path)
    with pytest.raises(ConfigError, match=r"record\.trace=true but the interrupted run .* record\.trace=false: "):
        train_in_process(run_dir, ["epochs=2", "record.trace=true"])
    assert not (run_dir / "trace.csv").exists()


def test_a_checkpoint_from_another_run_is_refused(finished_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(finished_run, other)
    run_dir = interrupted_copy(finished_run, tmp_path)
    header = json.loads((run_dir / "run.json").read_text())
    header["run_id"] = "0123456789ab"  # the same config, trained as a different run
    (run_dir / "run.json").write_text(json.dumps(header))
    with pytest.raises(ConfigError, match=r"checkpoint\.pt .*belongs to run .*, not to this run 0123456789ab: delete "):
        train_in_process(run_dir, ["epochs=2"])


# --- (d) signals and permissions -----------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_marks_the_run_interrupted_before_the_process_ends(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "hardsamples.train", *TINY, "epochs=40", f"hydra.run.dir={tmp_path}"],
                            env={**os.environ, **ONE_THREAD}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "metrics.csv").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    header = json.loads((tmp_path / "run.json").read_text())
    assert header["status"] == "interrupted" and "SIGTERM" in header["error"], header["error"]
    assert "Traceback" not in err, err[-2000:]


@pytest.mark.slow
def test_sigint_ends_a_run_in_one_line_and_marks_it_interrupted(tmp_path):
    """Ctrl-C, or a time limit's SIGINT (`timeout --signal=INT`, as the GPU kit stops a command): the run
    is recorded interrupted and the command says so in one line, with no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "hardsamples.train", *TINY, "epochs=40", f"hydra.run.dir={tmp_path}"],
                            env={**os.environ, **ONE_THREAD}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=as_from_a_terminal)
    deadline = time.monotonic() + 120
    while not (tmp_path / "metrics.csv").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "interrupted"
    assert err.strip().splitlines()[-1].startswith("error: interrupted (Ctrl-C or SIGINT): run the same command again")
    assert "Traceback" not in err, err[-2000:]


def test_records_are_written_with_the_umask_permissions(tmp_path):
    from hardsamples import record_files
    old = os.umask(0o022)
    try:
        record_files.write_json(tmp_path / "run.json", {"status": "running"})
        record_files.write_csv(tmp_path / "metrics.csv", ["a"], [{"a": 1}])
    finally:
        os.umask(old)
    assert (tmp_path / "run.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "metrics.csv").stat().st_mode & 0o777 == 0o644


# --- (e) bad input: one line before anything is written --------------------------------------------

BAD_INPUTS = {
    "delta a string": (["delta=abc"], r"delta=abc is not a number: "),
    "epochs a string": (["epochs=ten"], r"epochs=ten is not a whole number: "),
    "epochs 2.5": (["epochs=2.5"], r"epochs=2.5 is not a whole number: "),
    "batch_size a string": (["batch_size=big"], r"batch_size=big is not a whole number: "),
    "batch_size 1": (["batch_size=1"], r"batch_size=1 is too small for BatchNorm.*: use batch_size=2 or more"),
    "lr a string": (["optimizer.lr=fast"], r"optimizer.lr=fast is not a number: "),
    "lr nan": (["optimizer.lr=nan"], r"optimizer.lr=nan is not a finite number >= 0: "),
    "lr inf": (["optimizer.lr=inf"], r"optimizer.lr=inf is not a finite number >= 0: "),
    "lr negative": (["optimizer.lr=-0.1"], r"optimizer.lr=-0.1 is not a finite number >= 0: "),
    "momentum a string": (["optimizer.momentum=high"], r"optimizer.momentum=high is not a number: "),
    "seed a string": (["seed=one"], r"seed=one is not a whole number: "),
    "seed beyond 2^64": (["seed=18446744073709551616"], r"seed=18446744073709551616 is outside .*: "),
    "image_size 0": (["image_size=0"], r"image_size=0 is too small.*: use image_size=2 or more"),
    "image_size 1": (["image_size=1"], r"image_size=1 is too small.*: "),
    "image_size negative": (["image_size=-16"], r"image_size=-16 is too small.*: "),
    "num_classes 0": (["dataset.num_classes=0"], r"dataset.num_classes=0 is too small.*: use dataset.num_classes=2 or more"),
    "num_classes 1": (["dataset.num_classes=1"], r"dataset.num_classes=1 is too small.*: "),
    "no test samples": (["dataset.num_test=0"], r"dataset.num_test=0 is too small.*: "),
    "train_subset 0": (["eval.train_subset=0"], r"eval.train_subset=0 is too small: .*null"),
    "train_subset negative": (["eval.train_subset=-5"], r"eval.train_subset=-5 is too small: "),
    "test split below one eval batch": (["batch_size=200"],
                                        r"the test split has 128 samples, fewer than one evaluation batch of 200"),
    "train subset below one eval batch": (["eval.train_subset=50"],
                                          r"eval.train_subset=50 is fewer than one evaluation batch of 64"),
    "wandb mode typo": (["logger.wandb.mode=onlin"], r"logger.wandb.mode=onlin is unknown: use auto, online"),
}


@pytest.mark.parametrize("overrides,message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_refused_in_one_line_before_anything_is_written(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        train_in_process(tmp_path, overrides)
    assert "\n" not in str(err.value) and ": " in str(err.value)
    assert not (tmp_path / "run.json").exists()


CLI_BAD_INPUTS = {
    "typo added with +": (["+detla=0.5"], r"error: unknown key detla \(added with \+detla=0.5\): .*delta"),
    "paper preset on digits": (["preset=paper", "dataset=digits", "model.name=test_resnet", "epochs=1",
                               "logger.wandb.mode=disabled"],
                              r"error: the test split has 450 samples, fewer than one evaluation batch of 512"),
    "delta a string": (["delta=abc"], r"error: delta=abc is not a number: "),
    "wandb mode typo": (["logger.wandb.mode=onlin"], r"error: logger.wandb.mode=onlin is unknown: "),
}


@pytest.mark.parametrize("args,message", CLI_BAD_INPUTS.values(), ids=CLI_BAD_INPUTS.keys())
def test_bad_input_on_the_command_line_is_one_line_and_exit_2(tmp_path, args, message):
    base = [] if "preset=paper" in args else TINY
    line = one_error_line(run_cli([*base, *args, f"hydra.run.dir={tmp_path / 'run'}"], env=ONE_THREAD))
    import re
    assert re.match(message, line), line
    assert not (tmp_path / "run" / "run.json").exists()


def test_a_typo_added_with_plus_is_refused_before_a_sweep_starts(tmp_path):
    result = sweep(tmp_path, "epochs=1", "delta=1.0,0.5", "seed=0", "+detla=0.5", "sweep_name=typo")
    line = one_error_line(result)
    assert "unknown key detla" in line and not (tmp_path / "results/runs/typo").exists()


def test_a_run_directory_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "run").write_text("not a directory")
    line = one_error_line(run_cli([*TINY, f"hydra.run.dir={tmp_path / 'run'}"], env=ONE_THREAD))
    assert "is a file" in line and (tmp_path / "run").read_text() == "not a directory"


# --- (f) W&B follows its own environment and never stalls a run ------------------------------------

class FakeWandb:
    def __init__(self):
        self.calls = []

    def init(self, **kwargs):
        self.calls.append(kwargs)
        raise RuntimeError("no network")  # a W&B that cannot start


@pytest.fixture
def fake_wandb(monkeypatch):
    wandb = pytest.importorskip("wandb")
    fake = FakeWandb()
    monkeypatch.setattr(wandb, "init", fake.init)
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DISABLED", "WANDB_INIT_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    yield fake
    wandb.teardown()  # W&B keeps the settings it read (a fake API key) in a process-wide singleton


def mirror(mode: str, tmp_path):
    from omegaconf import OmegaConf
    from hardsamples.wandb_mirror import WandbMirror
    cfg = OmegaConf.create({"mode": mode, "project": "p", "entity": None, "group": None, "name": None})
    header = {"run_id": "abc", "run_name": "n", "sweep": "s", "model": "m", "dataset": "d", "method": "standard",
              "delta": 1.0, "seed": 0, "fidelity": "paper_code", "config": {}, "num_batches": 1, "k": 1,
              "num_classes": 2, "channels": 1, "update_budget": 1}
    return WandbMirror(cfg, header, tmp_path)


@pytest.mark.parametrize("env_mode", ["disabled", "offline"])
def test_wandb_mode_auto_defers_to_wandb_mode_in_the_environment(fake_wandb, monkeypatch, tmp_path, env_mode):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)  # logged in, but the environment says otherwise
    monkeypatch.setenv("WANDB_MODE", env_mode)
    assert mirror("auto", tmp_path).mode == env_mode
    assert [call["mode"] for call in fake_wandb.calls] == ([] if env_mode == "disabled" else ["offline"])


def test_wandb_mode_disabled_in_the_environment_turns_off_an_explicit_online(fake_wandb, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert mirror("online", tmp_path).mode == "disabled" and fake_wandb.calls == []


def test_wandb_start_up_wait_is_bounded_and_a_failure_is_a_warning(fake_wandb, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    m = mirror("auto", tmp_path)
    assert m.run is None and "W&B could not start" in caplog.text
    (call,) = fake_wandb.calls
    assert call["settings"].init_timeout <= 15
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "3")
    mirror("auto", tmp_path)
    assert fake_wandb.calls[-1]["settings"].init_timeout == 3


def test_a_slow_wandb_start_is_not_counted_in_the_runs_seconds(fake_wandb, monkeypatch, tmp_path):
    import pandas as pd

    def slow_init(**kwargs):
        time.sleep(5)
        raise RuntimeError("timed out")

    wandb = pytest.importorskip("wandb")
    monkeypatch.setattr(wandb, "init", slow_init)
    assert train_in_process(tmp_path, ["epochs=1", "logger.wandb.mode=online"]) == "finished"
    # Counted, the wait alone would make it >= 5 s; the tiny epoch itself takes well under a second.
    assert pd.read_csv(tmp_path / "metrics.csv")["seconds"].iloc[-1] < 5


@pytest.fixture
def read_only(tmp_path):
    """A read-only bind mount of a directory (root only): chmod does not stop root from writing."""
    mounted = []

    def make(path: Path) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("a read-only mount needs root")
        if subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode != 0:
            pytest.skip("mount --bind is not allowed here")
        mounted.append(path)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        return path

    yield make
    for path in mounted:
        subprocess.run(["umount", str(path)], check=False)


def test_a_finished_run_in_a_read_only_results_directory_is_skipped(finished_run, tmp_path, read_only):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    read_only(run_dir)
    result = run_cli([*TINY, "epochs=2", f"hydra.run.dir={run_dir}"], env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "already finished, nothing to do" in result.stdout + result.stderr


def test_an_unfinished_run_in_a_read_only_results_directory_is_one_line(finished_run, tmp_path, read_only):
    run_dir = interrupted_copy(finished_run, tmp_path)
    read_only(run_dir)
    line = one_error_line(run_cli([*TINY, "epochs=2", f"hydra.run.dir={run_dir}"], env=ONE_THREAD))
    assert "is not writable" in line


# --- (g, h) a job killed under the launcher: recorded and summarised, the rest goes on -----------

def as_from_a_terminal() -> None:
    """SIGINT as a terminal's foreground command has it. A test suite started in the background (`make
    test &`, some CI runners) has SIGINT ignored, and every process it starts inherits that: Ctrl-C
    could then not be simulated, and cancelled submitit jobs would not stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_sweep(cwd: Path, launcher: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hardsamples.train", "-m", "experiment=demo",
         *TINY, f"launcher={launcher}", *args], cwd=cwd, env={**os.environ, **ONE_THREAD},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=as_from_a_terminal)


def kill_job_when_checkpointed(proc: subprocess.Popen, run_dir: Path) -> int:
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoint.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    pid = json.loads((run_dir / "job.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    return pid


def assert_killed_job_recorded(out: str, proc: subprocess.Popen, victim: Path, other: Path) -> None:
    assert proc.returncode == 1, out[-3000:]
    summary = [line for line in out.splitlines() if line.startswith("sweep ")]
    assert summary and ": 2 jobs in " in summary[-1], out[-3000:]
    assert summary[-1].endswith(": 1 finished, 0 resumed, 0 skipped, 0 diverged, 1 failed"), summary[-1]
    assert f"failed    {victim.name}: " in out
    assert json.loads((victim / "job.json").read_text())["outcome"] == "failed"
    header = json.loads((victim / "run.json").read_text())
    assert header["status"] == "interrupted" and header["error"], header
    assert json.loads((other / "run.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_a_submitit_job_killed_from_outside_is_recorded_failed_and_the_sweep_is_summarised(tmp_path):
    proc = start_sweep(tmp_path, "submitit_local", "epochs=12", "delta=1.0,0.5", "seed=0", "sweep_name=killed")
    runs = tmp_path / "results/runs/killed"
    victim, other = (runs / "test_resnet-synthetic-hard_batches-d0.5-s0", runs / "test_resnet-synthetic-hard_batches-d1.0-s0")
    kill_job_when_checkpointed(proc, victim)
    out, _ = proc.communicate(timeout=400)
    assert_killed_job_recorded(out, proc, victim, other)


def status_after_the_kill(run_dir: Path) -> str:
    """run.json's status; a job the pool took down before it wrote run.json (its worker started late on
    a loaded machine) has only its job.json, which must say failed."""
    if (run_dir / "run.json").exists():
        return json.loads((run_dir / "run.json").read_text())["status"]
    outcome = json.loads((run_dir / "job.json").read_text())["outcome"]
    assert outcome == "failed", (run_dir.name, outcome)
    return "failed before its record"


@pytest.mark.slow
def test_a_killed_joblib_worker_is_recorded_failed_and_the_sweep_goes_on(tmp_path):
    """Loky takes down the whole pool when one worker dies: the jobs running then are recorded failed
    (a rerun resumes them), the jobs not started yet run in a fresh pool, and the summary counts all."""
    proc = start_sweep(tmp_path, "joblib", "hydra.launcher.n_jobs=2", "epochs=12", "delta=1.0,0.5,0.8", "seed=0",
                       "sweep_name=killed")
    runs = tmp_path / "results/runs/killed"
    victim = runs / "test_resnet-synthetic-hard_batches-d0.5-s0"
    kill_job_when_checkpointed(proc, victim)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 1, out[-3000:]
    summary = [line for line in out.splitlines() if line.startswith("sweep ")]
    assert summary and ": 3 jobs in " in summary[-1], out[-3000:]
    assert f"failed    {victim.name}: TerminatedWorkerError" in out and "Traceback" not in out
    assert json.loads((victim / "run.json").read_text())["status"] == "interrupted"
    statuses = {d.name: status_after_the_kill(d) for d in runs.iterdir() if d.is_dir() and not d.name.startswith(".")}
    assert statuses["test_resnet-synthetic-hard_batches-d0.8-s0"] == "finished"  # started after the kill
    assert "running" not in statuses.values()
    finished = sum(s == "finished" for s in statuses.values())
    assert summary[-1].endswith(f": {finished} finished, 0 resumed, 0 skipped, 0 diverged, {3 - finished} failed")

    # A rerun resumes every run the kill took down, to the record of an uninterrupted run.
    rerun = start_sweep(tmp_path, "joblib", "hydra.launcher.n_jobs=2", "epochs=12", "delta=1.0,0.5,0.8", "seed=0",
                        "sweep_name=killed")
    out, _ = rerun.communicate(timeout=400)
    assert rerun.returncode == 0, out[-3000:]
    # The victim resumes from its checkpoint; a run the pool took down before its first checkpoint
    # starts again (finished, not resumed), so only the sum of the two is fixed.
    line = [text for text in out.splitlines() if text.startswith("sweep ")][-1]
    counts = {outcome: int(n) for n, outcome in re.findall(r"(\d+) (finished|resumed|skipped|diverged|failed)", line)}
    assert counts == {**counts, "skipped": finished, "diverged": 0, "failed": 0}, line
    assert counts["resumed"] >= 1 and counts["resumed"] + counts["finished"] == 3 - finished, line
    import pandas as pd
    reference = tmp_path / "reference"
    assert train_in_process(reference, ["epochs=12", "delta=0.5", "seed=0"]) == "finished"
    for name in ("metrics.csv", "batch_accuracy.csv"):
        drop = ["seconds", "train_seconds"]
        pd.testing.assert_frame_equal(pd.read_csv(victim / name).drop(columns=drop, errors="ignore"),
                                      pd.read_csv(reference / name).drop(columns=drop, errors="ignore"),
                                      check_exact=True, obj=name)


@pytest.mark.slow
def test_sigterm_to_a_sweep_records_the_running_job_and_ends_without_a_traceback(tmp_path):
    proc = start_sweep(tmp_path, "local", "epochs=40", "delta=1.0,0.5", "seed=0", "sweep_name=term")
    run_dir = tmp_path / "results/runs/term/test_resnet-synthetic-hard_batches-d1.0-s0"
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoint.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in out, out[-3000:]
    assert "error: interrupted by SIGTERM" in out
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    note = json.loads((run_dir / "job.json").read_text())
    assert note["outcome"] == "failed" and "SIGTERM" in note["error"]


def test_a_job_requeued_after_its_run_finished_keeps_its_job_note(tmp_path, monkeypatch):
    """SLURM requeues a pre-empted job even when its run finished inside the kill window: the requeued
    job must not rewrite the finished job's note to `skipped` after the sweep's summary."""
    from conftest import compose_config
    from hardsamples.sweep.job import sweep_job
    from hardsamples.train import run
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    cfg = compose_config([*TINY, "epochs=1"])
    assert sweep_job(cfg, tmp_path, 0, run) == "finished"
    first = json.loads((tmp_path / "job.json").read_text())
    assert sweep_job(cfg, tmp_path, 0, run) == "finished"  # the same SLURM job, requeued
    assert json.loads((tmp_path / "job.json").read_text()) == first
    monkeypatch.setenv("SLURM_JOB_ID", "4243")  # a new sweep's job: skipped, and says so
    assert sweep_job(cfg, tmp_path, 0, run) == "skipped"
    assert json.loads((tmp_path / "job.json").read_text())["outcome"] == "skipped"


def test_a_one_sample_evaluation_batch_that_batchnorm_cannot_take_is_refused_before_training(tmp_path):
    """paper_code evaluates in BatchNorm's train mode; 129 test images in batches of 64 leave a last
    batch of one, which a 16 px ResNet (1 x 1 at its last stage) cannot evaluate: it used to fail after
    the whole training, in the final evaluation."""
    with pytest.raises(ConfigError, match=r"the test split's last evaluation batch holds 1 sample.*: use a batch_size"):
        train_in_process(tmp_path, ["epochs=1", "dataset.num_test=129"])
    assert not (tmp_path / "run.json").exists()
    assert train_in_process(tmp_path / "clean", ["epochs=1", "dataset.num_test=129", "fidelity=clean"]) == "finished"


@pytest.mark.slow
def test_a_run_ended_by_sigterm_resumes_to_the_record_of_an_uninterrupted_run(tmp_path):
    import pandas as pd
    args = [*TINY, "epochs=8", "delta=0.8", "record.trace=true"]
    reference = tmp_path / "reference"
    assert train_in_process(reference, ["epochs=8", "delta=0.8", "record.trace=true"]) == "finished"
    victim = tmp_path / "victim"
    proc = subprocess.Popen([sys.executable, "-m", "hardsamples.train", *args, f"hydra.run.dir={victim}"],
                            env={**os.environ, **ONE_THREAD}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (victim / "checkpoint.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert json.loads((victim / "run.json").read_text())["status"] == "interrupted"
    result = run_cli([*args, f"hydra.run.dir={victim}"], env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    header = json.loads((victim / "run.json").read_text())
    assert header["status"] == "finished" and len(header["resumed_from"]) == 1
    for name in ("metrics.csv", "trace.csv", "batch_accuracy.csv"):
        drop = ["seconds", "train_seconds"]
        pd.testing.assert_frame_equal(pd.read_csv(victim / name).drop(columns=drop, errors="ignore"),
                                      pd.read_csv(reference / name).drop(columns=drop, errors="ignore"),
                                      check_exact=True, obj=name)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_a_submitit_launcher_interrupted_or_hung_up_cancels_its_jobs(tmp_path, sig):
    proc = start_sweep(tmp_path, "submitit_local", "epochs=1000", "delta=1.0,0.5", "seed=0", "sweep_name=cancel")
    runs = [tmp_path / "results/runs/cancel" / f"test_resnet-synthetic-hard_batches-d{d}-s0" for d in ("1.0", "0.5")]
    deadline = time.monotonic() + 240
    while not all((r / "checkpoint.pt").exists() for r in runs):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    pids = [json.loads((r / "job.json").read_text())["pid"] for r in runs]
    try:
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode != 0
        deadline = time.monotonic() + 60
        while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(pid_alive(pid) for pid in pids), "the jobs were left running"
        for r in runs:
            assert json.loads((r / "run.json").read_text())["status"] == "interrupted"
    finally:  # never leave a job training after the test (submitit's jobs ignore SIGTERM)
        if proc.poll() is None:
            proc.kill()
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_two_jobs_of_one_sweep_on_the_same_config_are_both_counted(tmp_path):
    """record.trace is not compared (two values, one run): the second job skips the run the first
    finished, and the summary still counts both jobs instead of the last one's note."""
    result = sweep(tmp_path, "epochs=1", "delta=1.0", "seed=0", "record.trace=false,true", "sweep_name=same")
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary_line(result).endswith(": 2 jobs in " + summary_line(result).split(": 2 jobs in ")[-1])
    assert summary_line(result).endswith(": 1 finished, 0 resumed, 1 skipped, 0 diverged, 0 failed"), summary_line(result)


def test_a_job_stopped_by_systemexit_says_so_in_both_notes(tmp_path, monkeypatch):
    """submitit ends a pre-empted job with SystemExit after requeueing it: run.json and job.json
    both say the run was stopped and will resume, instead of `failed (SystemExit: -1)` beside a
    job.json left `running`."""
    from conftest import compose_config
    from hardsamples import train
    from hardsamples.sweep.job import sweep_job

    def stopped(*args, **kwargs):
        raise SystemExit(-1)

    monkeypatch.setattr(train, "train_and_record", stopped)
    with pytest.raises(SystemExit):
        sweep_job(compose_config([*TINY, "epochs=1"]), tmp_path, 0, run_one=train.run)
    header = json.loads((tmp_path / "run.json").read_text())
    note = json.loads((tmp_path / "job.json").read_text())
    assert header["status"] == "interrupted" and "resumes from the last checkpoint" in header["error"]
    assert note["outcome"] == "failed" and note["error"] == header["error"]  # the sweep counts the job as failed
