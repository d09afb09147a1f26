"""A study in slices: a sweep's time budget (no run starts after it, running ones finish or stop at a
checkpoint and resume), seed-major job order, and the next slice continuing where the last stopped."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import TINY, compose_config, read_metrics, run_cli, train_in_process
from hardsamples import slices
from hardsamples.errors import ConfigError
from hardsamples.sweep.job import read_job_notes, sweep_job
from hardsamples.sweep.summary import summary_text
from hardsamples.train import run
from hydra_plugins.hardsamples_launchers.sweeper import SlicedSweeper


@pytest.fixture
def budget_spent(monkeypatch):
    """This process runs a job of a sweep whose time budget ran out a second ago."""
    def spend(at_budget: str = "finish") -> None:
        monkeypatch.setenv(slices.DEADLINE_ENV, str(time.time() - 1))
        monkeypatch.setenv(slices.AT_BUDGET_ENV, at_budget)
    return spend


def without_seconds(run_dir):
    return read_metrics(run_dir).drop(columns=["seconds", "train_seconds"])


def test_at_budget_stop_ends_a_run_at_its_checkpoint_and_the_next_slice_resumes_it_exactly(tmp_path, budget_spent,
                                                                                           monkeypatch):
    assert train_in_process(tmp_path / "whole", ["delta=0.5"]) == "finished"
    budget_spent("stop")
    with pytest.raises(slices.BudgetSpent):
        train_in_process(tmp_path / "sliced", ["delta=0.5"])
    header = json.loads((tmp_path / "sliced" / "run.json").read_text())
    assert header["status"] == "interrupted" and "time budget" in header["error"]
    assert len(read_metrics(tmp_path / "sliced")) == 1  # stopped after the first interval's checkpoint
    monkeypatch.delenv(slices.DEADLINE_ENV)
    assert train_in_process(tmp_path / "sliced", ["delta=0.5"]) == "finished"
    assert json.loads((tmp_path / "sliced" / "run.json").read_text())["resumed_from"] == [9]
    pd.testing.assert_frame_equal(without_seconds(tmp_path / "sliced"), without_seconds(tmp_path / "whole"),
                                  check_exact=True)


def test_at_budget_finish_lets_a_running_run_end(tmp_path, budget_spent):
    budget_spent("finish")
    assert train_in_process(tmp_path, ["epochs=2"]) == "finished"


def test_a_job_after_the_budget_is_postponed_unless_its_run_is_over(tmp_path, budget_spent):
    cfg = compose_config(TINY + ["epochs=1"])
    assert train_in_process(tmp_path / "over", ["epochs=1"]) == "finished"
    budget_spent("stop")
    assert sweep_job(cfg, tmp_path / "new", 0, run_one=run) == "postponed"
    assert not (tmp_path / "new" / "run.json").exists() and not (tmp_path / "new" / "job.json").exists()
    assert sweep_job(cfg, tmp_path / "over", 1, run_one=run) == "skipped"  # nothing left to do: not postponed
    notes = read_job_notes(tmp_path)
    assert sorted(note["outcome"] for note in notes.values()) == ["postponed", "skipped"]
    text = summary_text(tmp_path, notes, 60)
    assert text.splitlines()[0].endswith(": 0 finished, 0 resumed, 1 skipped, 0 diverged, 0 failed, 1 postponed")
    assert "time budget spent: 0 run(s) stopped at a checkpoint, 1 not started" in text


def test_a_job_stopped_at_the_budget_is_noted_stopped_and_its_next_slice_clears_the_postponed_note(tmp_path,
                                                                                                    budget_spent,
                                                                                                    monkeypatch):
    cfg = compose_config(TINY)

    def started_before_the_budget_ran_out(cfg, run_dir):
        budget_spent("stop")
        return run(cfg, run_dir)

    assert sweep_job(cfg, tmp_path / "run", 0, run_one=started_before_the_budget_ran_out) == "stopped"
    note = json.loads((tmp_path / "run" / "job.json").read_text())
    assert note["outcome"] == "stopped" and "time budget" in note["error"]
    assert sweep_job(cfg, tmp_path / "run", 0, run_one=run) == "postponed"  # the slice's later jobs
    assert (tmp_path / "run" / slices.POSTPONED_NOTE).exists()
    monkeypatch.delenv(slices.DEADLINE_ENV)
    assert sweep_job(cfg, tmp_path / "run", 0, run_one=run) == "resumed"
    assert not (tmp_path / "run" / slices.POSTPONED_NOTE).exists()


def test_the_grid_runs_seed_major_so_a_cut_slice_leaves_complete_pairs():
    parsed = OverridesParser.create().parse_overrides(["delta=1.0,0.2", "method=hard_batches", "seed=0,1,2"])
    (jobs,) = SlicedSweeper.split_arguments(parsed, None)
    assert [job[0] for job in jobs] == ["seed=0", "seed=0", "seed=1", "seed=1", "seed=2", "seed=2"]
    assert [job[1] for job in jobs[:2]] == ["delta=1.0", "delta=0.2"]  # within a seed, the grid's own order


@pytest.mark.parametrize("minutes, at_budget, expected", [
    (0, "finish", "hydra.sweeper.budget_minutes=0 is not a number of minutes > 0"),
    ("soon", "finish", "hydra.sweeper.budget_minutes=soon is not a number"),
    (5, "abort", "hydra.sweeper.at_budget=abort is unknown: use finish"),
])
def test_a_bad_budget_is_refused_in_one_line(minutes, at_budget, expected):
    with pytest.raises(ConfigError, match="^" + expected.replace("+", r"\+")):
        slices.check_budget(minutes, at_budget)
    slices.check_budget(None, "finish")
    slices.check_budget(0.5, "stop")


@pytest.mark.slow
def test_a_sweep_stops_starting_runs_at_its_budget_and_the_next_slice_continues(tmp_path):
    """The real CLI: slice 1 has a budget of 6 s (at_budget=stop) for a grid of about 20 s of training
    (two runs of 100 intervals), so it cannot end the grid: whichever run is training when the budget
    runs out stops at its checkpoint, and no run starts after it. How far slice 1 gets depends on the
    machine's speed, so the test checks what must hold for any speed; slice 2 (no budget) resumes what
    stopped, starts what was postponed, and ends the grid."""
    grid = ["-m", "experiment=demo", *TINY, "dataset.num_train=192", "dataset.num_test=64", "launcher=local",
            "epochs=100", "delta=1.0,0.5", "seed=0", "sweep_name=sliced"]
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    first = run_cli([*grid, "hydra.sweeper.budget_minutes=0.1", "hydra.sweeper.at_budget=stop"], cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    counts = outcome_counts(first.stdout)
    assert counts["stopped"] + counts["postponed"] >= 1 and counts["finished"] <= 1, first.stdout[-2000:]
    assert counts["finished"] + counts["stopped"] + counts["postponed"] == 2 and counts["failed"] == 0
    runs = tmp_path / "results/runs/sliced"
    statuses = sorted(json.loads(p.read_text())["status"] for p in runs.glob("*/run.json"))
    assert statuses == sorted(["finished"] * counts["finished"] + ["interrupted"] * counts["stopped"])

    second = run_cli(grid, cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    again = outcome_counts(second.stdout)
    assert (again["resumed"], again["finished"], again["skipped"]) == (counts["stopped"], counts["postponed"],
                                                                     counts["finished"]), second.stdout[-2000:]
    assert not list(runs.glob(f"*/{slices.POSTPONED_NOTE}"))
    headers = [json.loads(p.read_text()) for p in runs.glob("*/run.json")]
    assert len(headers) == 2 and all(header["status"] == "finished" for header in headers)


def outcome_counts(stdout: str) -> dict[str, int]:
    """The sweep's summary line ("sweep DIR: 2 jobs in 0m09s: 1 finished, 0 resumed, ...") as counts."""
    summary = [line for line in stdout.splitlines() if line.startswith("sweep ")][-1]
    counts = {"postponed": 0, "stopped": 0}
    for part in summary.rsplit(": ", 1)[1].split(", "):
        number, outcome = part.split(" ")
        counts[outcome] = int(number)
    return counts
