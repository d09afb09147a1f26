"""What a run and a sweep print: the settings in force first, progress on request (a bar, or a log line with
the time left), a line per sweep job with the sweep's own progress, a bar per job, the record's path last."""

from __future__ import annotations

import fcntl
import logging
import time

import pytest
from omegaconf import OmegaConf

from conftest import train_in_process
from hardsamples.sweep import job, summary
from hardsamples.errors import ConfigError
from hardsamples.record_files import write_json


def hardsamples_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hardsamples"]


def test_the_first_lines_state_the_settings_in_force_and_the_last_where_the_record_is(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hardsamples")
    assert train_in_process(tmp_path / "run", ["delta=1.0", "progress=off"]) == "finished"
    lines = hardsamples_lines(caplog)
    name = "test_resnet-synthetic-hard_batches-d1.0-s0"
    assert lines[0] == (f"{name}: model.name=test_resnet dataset.name=synthetic image_size=16 epochs=3 batch_size=64"
                        " delta=1.0 method=hard_batches fidelity=paper_code seed=0")
    assert lines[1].startswith(f"{name}: 600 training images in N = 9 fixed batches, k = 9 a round, 27 updates in all,"
                               " on cpu; recorded as method standard (at delta = 1 every batch is trained every round")
    assert lines[-1].startswith(f"{name}: finished, test top-1 ") and lines[-1].endswith(
        f" after 3 intervals; the record is in {tmp_path / 'run'} (run.json, metrics.csv)")


def test_progress_log_writes_a_line_with_the_time_left(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hardsamples")
    assert train_in_process(tmp_path / "run", ["progress=log", "progress_every_s=0.001"]) == "finished"
    progress = [line for line in hardsamples_lines(caplog) if "% of 1728 images" in line]
    assert progress and all(" left, " in line and "img/s" in line and "\r" not in line for line in progress)


def test_progress_bar_draws_the_bar_without_a_terminal(tmp_path, capsys):
    assert train_in_process(tmp_path / "bar", ["progress=bar"]) == "finished"
    assert "img/s" in capsys.readouterr().err  # tqdm's bar on stderr, which is no terminal here
    assert train_in_process(tmp_path / "auto", ["progress=auto"]) == "finished"
    assert "img/s" not in capsys.readouterr().err


@pytest.mark.parametrize("override, message", [("progress=sometimes", "progress=sometimes is unknown: use auto"),
                                               ("progress_every_s=0", "progress_every_s=0 must be above 0")])
def test_bad_progress_settings_are_one_line(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        train_in_process(tmp_path / "run", [override])


def test_a_sweep_counts_its_jobs_as_the_basic_sweeper_combines_them():
    config = OmegaConf.create({"hydra": {"overrides": {"task": ["a=1,2", "b=3", "seed=0,1,2"]},
                                         "sweeper": {"params": {"seed": "0,1", "delta": "1.0,0.5"}}}})
    assert summary.swept_keys(config) == ["a", "delta", "seed"]
    assert summary.job_count(config) == 2 * 3 * 2  # the command line's seed (3 values) wins over the grid's
    config.hydra.overrides.task.append("lr=interval(0,1)")  # another sweeper's: not countable ahead
    assert summary.job_count(config) is None


def test_each_job_says_how_far_the_sweep_is_and_the_time_left(tmp_path, monkeypatch):
    monkeypatch.setenv(job.SWEEP_ID_ENV, "this")
    monkeypatch.setenv(job.SWEEP_JOBS_ENV, "6")
    monkeypatch.setenv(job.SWEEP_STARTED_ENV, "1000")
    monkeypatch.setattr(time, "time", lambda: 1120.0)
    for i, (sweep_id, outcome) in enumerate([("this", "finished"), ("this", "failed"), ("this", "skipped"),
                                             ("this", "running"), ("earlier", "finished")]):
        write_json(tmp_path / f"run{i}" / "job.json", {"attempt": str(i), "sweep_id": sweep_id, "outcome": outcome})
    # 3 of this launch's 6 jobs over (one skipped) in 2 minutes: 2 trained, 1 minute each, 3 to go
    assert job.progress_line(tmp_path) == f"sweep {tmp_path.name}: 3 of 6 runs over in 2m00s, about 3m00s left"


def test_each_job_process_of_a_sweep_draws_its_bar_on_a_line_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("HARDSAMPLES_GPU_LOCKS", str(tmp_path))
    monkeypatch.setattr(job, "_bar_line", None)
    monkeypatch.delenv(job.SWEEP_ID_ENV, raising=False)
    assert job.bar_position() == 0  # not in a sweep: the first line, nothing claimed
    monkeypatch.setenv(job.SWEEP_ID_ENV, "this")
    with open(tmp_path / "bar-0.lock", "w") as other:  # another job process holds line 0
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert job.bar_position() == 1
        assert job.bar_position() == 1  # kept for the process's later jobs
    job._bar_line[1].close()
