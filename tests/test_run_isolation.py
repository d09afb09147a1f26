"""Nothing a refused or stale process does touches another run (issue 22): Hydra's files are written only by
the process that holds the run, a run whose directory was deleted under it stops writing, a sweep's summary
counts only its own jobs and survives a NaN, and a file or folder in the wrong place is one line."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import TINY, compose_config, run_cli, train_in_process
from hardsamples import record_files, records
from hardsamples.errors import ConfigError

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run but its lock file, which names the last process that held the directory (a process
    refused after it held the directory, e.g. for another config, was that process)."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != record_files.LOCK_NAME}


# --- Hydra's files: written by the holder only ----------------------------------------------------------------

@pytest.mark.slow
def test_a_refused_rerun_writes_nothing_into_the_run_it_was_refused(tmp_path):
    run_dir = tmp_path / "run"
    first = run_cli([*TINY, "epochs=1", f"hydra.run.dir={run_dir}"], env=ONE_THREAD)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "lr: 0.005" in (run_dir / ".hydra" / "config.yaml").read_text()
    assert "interval 1/1" in (run_dir / "train.log").read_text()
    before = snapshot(run_dir)
    line = one_error_line(run_cli([*TINY, "epochs=1", "optimizer.lr=0.5", f"hydra.run.dir={run_dir}"], env=ONE_THREAD))
    assert "holds a run with a different config (optimizer.lr: 0.005 there, 0.5 here)" in line
    assert snapshot(run_dir) == before, "the refused process rewrote a file of the run it was refused"


def test_hydra_writes_nothing_into_a_run_directory_before_the_run_holds_it():
    cfg = compose_config(TINY)
    from hydra import compose, initialize_config_dir

    from hardsamples.layout import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        hydra = compose(config_name="config", overrides=TINY, return_hydra_config=True).hydra
    assert hydra.output_subdir is None
    assert list(hydra.job_logging.root.handlers) == ["console"] and hydra.job_logging.handlers.file.delay
    assert cfg.epochs == 3


# --- the hold: a run whose directory was deleted stops writing ---------------------------------------------------

def test_a_write_into_a_deleted_held_directory_is_refused_and_makes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    with record_files.hold_run_dir(run_dir):
        record_files.write_json(run_dir / "run.json", {"status": "running"})
        shutil.rmtree(run_dir)
        with pytest.raises(record_files.LostHold, match=r"was deleted or replaced while this run held it"):
            record_files.write_json(run_dir / "run.json", {"status": "finished"})
    assert not run_dir.exists()


def test_a_write_into_a_held_directory_another_run_has_remade_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    with record_files.hold_run_dir(run_dir):
        shutil.rmtree(run_dir)
        run_dir.mkdir()
        (run_dir / record_files.LOCK_NAME).write_text("other-host:1\n")  # another process's lock file
        (run_dir / "run.json").write_text('{"status": "running", "who": "the other run"}')
        with pytest.raises(record_files.LostHold):
            record_files.write_json(run_dir / "run.json", {"status": "finished"})
    assert json.loads((run_dir / "run.json").read_text())["who"] == "the other run"


def test_a_run_whose_directory_is_deleted_mid_run_stops_and_leaves_the_new_run_alone(tmp_path, monkeypatch):
    """`make clean` during a run, then another config started in the same directory: the first run's next write
    is refused, so the other run's record is never replaced."""
    run_dir = tmp_path / "run"
    real_add = records.RunRecord.add_interval

    def add_then_replaced(record, row, *rows):
        real_add(record, row, *rows)
        shutil.rmtree(run_dir)
        run_dir.mkdir()
        (run_dir / record_files.LOCK_NAME).write_text("other-host:2\n")
        (run_dir / "run.json").write_text('{"status": "running", "who": "the other run"}')

    monkeypatch.setattr(records.RunRecord, "add_interval", add_then_replaced)
    with pytest.raises(record_files.LostHold):
        train_in_process(run_dir, ["epochs=2"])
    assert json.loads((run_dir / "run.json").read_text()) == {"status": "running", "who": "the other run"}
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "run.json"]


# --- a file or folder where the run writes: one line, nothing written ---------------------------------------------

@pytest.mark.parametrize("name", ["metrics.csv", "checkpoint.pt", "batch_accuracy.csv", "run.json", "trace.csv",
                                  "job.json", "train.log", ".lock"])
def test_a_record_file_that_is_a_directory_is_one_line(tmp_path, name):
    (tmp_path / name).mkdir()
    with pytest.raises(ConfigError, match=rf"{name} is a directory, where the run (writes its|keeps its lock)") as err:
        train_in_process(tmp_path, ["epochs=1"])
    assert "\n" not in str(err.value) and not (tmp_path / "run.json").is_file()


def test_a_hydra_folder_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / ".hydra").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"\.hydra is a file, where the run writes its Hydra config folder"):
        train_in_process(tmp_path, ["epochs=1"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["train.log", ".hydra"])
def test_hydras_files_in_the_way_are_one_line_on_the_command_line(tmp_path, name):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / name).mkdir() if name == "train.log" else (run_dir / name).write_text("x")
    line = one_error_line(run_cli([*TINY, "epochs=1", f"hydra.run.dir={run_dir}"], env=ONE_THREAD))
    assert name in line and not (run_dir / "run.json").exists()


def run_start_config(run_dir: Path) -> SimpleNamespace:
    return SimpleNamespace(hydra=SimpleNamespace(run=SimpleNamespace(dir=str(run_dir)), overrides=SimpleNamespace(task=[])))


@pytest.mark.parametrize("case", ["under a file", "under a read-only folder"])
def test_a_run_directory_that_cannot_be_made_is_one_line(tmp_path, monkeypatch, capsys, case):
    from hardsamples.config_checks.callback import ConfigCheck

    parent = tmp_path / "parent"
    if case == "under a file":
        parent.write_text("a file")
    else:  # root may write anywhere: the check's answer is faked, what follows from it is tested
        parent.mkdir()
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != parent)
    monkeypatch.setattr("hardsamples.config_checks.callback.added_key_error", lambda config: None)
    monkeypatch.setattr("hardsamples.config_checks.callback.check_settings", lambda config: None)
    with pytest.raises(SystemExit) as stop:
        ConfigCheck().on_run_start(run_start_config(parent / "runs" / "run"))
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1
    assert f"cannot be made: {parent} is {'a file' if case == 'under a file' else 'not writable'}" in err


@pytest.mark.slow
def test_a_fresh_run_or_sweep_under_a_read_only_folder_is_one_line(tmp_path):
    """A read-only bind mount (root only: chmod does not stop root), as a results folder shared read-only."""
    import subprocess

    folder = tmp_path / "shared"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", str(folder), str(folder)]).returncode != 0:
        pytest.skip("a read-only mount needs root and mount --bind")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        line = one_error_line(run_cli([*TINY, f"hydra.run.dir={folder / 'run'}"], env=ONE_THREAD))
        assert f"cannot be made: {folder} is not writable" in line
        line = one_error_line(run_cli(["-m", *TINY, "seed=0,1", f"hydra.sweep.dir={folder / 'sweep'}"], env=ONE_THREAD))
        assert f"the sweep directory {folder / 'sweep'} cannot be made" in line
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def sweep_start_config(sweep_dir: Path, launcher: dict) -> SimpleNamespace:
    return SimpleNamespace(hydra=SimpleNamespace(sweep=SimpleNamespace(dir=str(sweep_dir)), launcher=launcher,
                                                 overrides=SimpleNamespace(task=[])))


@pytest.mark.parametrize("launcher,message", [
    ({"_target_": "hydra_plugins.hardsamples_launchers.launchers.JoblibLauncher", "n_jobs": 0},
     "hydra.launcher.n_jobs=0 is not a number of jobs: use a whole number >= 1"),
    ({"_target_": "hydra_plugins.hardsamples_launchers.launchers.JoblibLauncher", "n_jobs": "two"},
     "hydra.launcher.n_jobs=two is not a number of jobs"),
    ({"_target_": "hydra_plugins.hardsamples_launchers.launchers.SlurmLauncher"},
     "launcher=slurm needs SLURM's sbatch, which is not on PATH here"),
    ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, "is a file"),
], ids=["joblib n_jobs=0", "joblib n_jobs a string", "slurm without sbatch", "sweep directory under a file"])
def test_a_sweep_that_cannot_start_is_one_line(tmp_path, monkeypatch, capsys, launcher, message):
    from hardsamples.config_checks.callback import ConfigCheck

    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr("hardsamples.config_checks.callback.added_key_error", lambda config: None)
    sweep_dir = tmp_path / "sweeps" / "demo"
    if message == "is a file":
        (tmp_path / "sweeps").write_text("a file")
    with pytest.raises(SystemExit) as stop:
        ConfigCheck().on_multirun_start(sweep_start_config(sweep_dir, launcher))
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and message in err, err


# --- a sweep's summary: its own jobs only, whatever their numbers ------------------------------------------------

def note(run_dir: Path, name: str, sweep_id: str, outcome: str, error: str | None = None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / name).write_text(json.dumps({"attempt": os.urandom(6).hex(), "sweep_id": sweep_id, "outcome": outcome,
                                            "error": error}))


def test_a_sweeps_summary_counts_only_its_own_jobs(tmp_path, capsys):
    """A second launch of the same sweep, at the same time, leaves refused notes beside the first launch's runs:
    they are the second launch's failures, not the first's."""
    from hardsamples.sweep.summary import SweepSummary

    summary = SweepSummary()
    summary.sweep_id = "first"
    for seed in (0, 1):
        note(tmp_path / f"run-s{seed}", "job.json", "first", "finished")
        note(tmp_path / f"run-s{seed}", "job.refused-abc.json", "second", "failed", "ConfigError: in use")
    note(tmp_path / "run-s2", "job.json", "an earlier launch", "failed", "old news")
    summary.on_multirun_end(SimpleNamespace(hydra=SimpleNamespace(sweep=SimpleNamespace(dir=str(tmp_path)))))
    out = capsys.readouterr().out
    assert ": 2 jobs in " in out and "2 finished, 0 resumed, 0 skipped, 0 diverged, 0 failed" in out, out


def test_the_summary_survives_a_final_loss_that_is_not_a_number(tmp_path):
    from hardsamples.sweep.summary import summary_text

    notes = {}
    for seed, loss in ((0, "0.5"), (1, "nan"), (2, "")):
        run_dir = tmp_path / f"run-s{seed}"
        note(run_dir, "job.json", "x", "finished")
        (run_dir / "run.json").write_text(json.dumps({"status": "finished", "model": "m", "dataset": "d",
                                                      "method": "standard", "delta": 1.0, "fidelity": "clean"}))
        (run_dir / "metrics.csv").write_text(f"interval,train_loss,test_top1\n1,{loss},{loss or 'nan'}\n")
        notes[run_dir / "job.json"] = {"outcome": "finished"}
    text = summary_text(tmp_path, notes, 1.0)
    assert "3 finished" in text and "train loss 0.5000 (2 not a number)" in text, text


def test_a_run_that_fills_the_disk_in_a_sweep_is_one_line_in_the_log(tmp_path, caplog):
    from hardsamples.sweep.job import sweep_job

    def fills_the_disk(cfg, run_dir):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    assert sweep_job(compose_config(TINY), tmp_path / "run", 0, run_one=fills_the_disk) == "failed"
    failed = [r for r in caplog.records if "failed" in r.getMessage()]
    assert failed and all(r.exc_info is None for r in failed), "a full disk is one line, not a traceback"
    assert json.loads((tmp_path / "run" / "job.json").read_text())["outcome"] == "failed"


def test_a_full_disk_in_a_sweep_job_fails_that_job_and_the_sweep_goes_on(tmp_path, monkeypatch):
    """job.json itself cannot be written: the job is failed (logged), never raised, so Hydra's sweeper goes on to
    the other jobs and the summary."""
    from hardsamples.sweep.job import sweep_job

    def full(path, obj):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(record_files, "write_json", full)
    cfg = compose_config(TINY)
    assert sweep_job(cfg, tmp_path / "run", 0, run_one=lambda cfg, run_dir: "finished") == "failed"


# --- make tables: an output folder that cannot be written ----------------------------------------------------

@pytest.mark.parametrize("fault", ["out is a file", "disk full"])
def test_tables_that_cannot_be_written_are_one_line(tmp_path, monkeypatch, capsys, fault):
    from hardsamples import tables

    runs = tmp_path / "runs"
    shutil.copytree(Path(__file__).resolve().parents[1] / "results/fashion_mnist/runs/test_resnet-fashion_mnist-"
                    "hard_batches-d1.0-s0", runs / "r")
    out = tmp_path / "out"
    if fault == "out is a file":
        out.write_text("a file")
    else:
        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "tables.md"))

        monkeypatch.setattr(Path, "write_text", full)
    assert tables.main([f"runs={runs}", f"out={out}", "figures=false", "table2=false"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: cannot write {out}") and "pass out=" in err, err
