"""`make tables` with broken records: every bad run is listed with its reason, never averaged, and
never stops the other runs from being tabulated (issue: reliability, make tables)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from hardsamples.analysis.aggregate import summarise_runs
from hardsamples.analysis.loading import load_records

STUDY = ROOT / "results" / "fashion_mnist" / "runs"
GOOD = [f"test_resnet-fashion_mnist-hard_batches-d{d}-s{s}" for d in ("1.0", "0.2") for s in (0, 1, 2)]
VICTIM = "test_resnet-fashion_mnist-hard_batches-d0.2-s2"
RULES = {"relative": {"kind": "relative", "tolerance": 0.01}}


@pytest.fixture
def runs(tmp_path) -> Path:
    """Six real records of the committed study (3 seeds at delta 1.0 and 0.2), copied."""
    for name in GOOD:
        shutil.copytree(STUDY / name, tmp_path / name)
    return tmp_path


def corrupt_run_json_list(run: Path):
    (run / "run.json").write_text("[1, 2, 3]")


def empty_metrics(run: Path):
    (run / "metrics.csv").write_text("")


def metrics_without_columns(run: Path):
    (run / "metrics.csv").write_text("a,b\n1,2\n")


def binary_batch_accuracy(run: Path):
    (run / "batch_accuracy.csv").write_bytes(bytes(range(256)) * 4)


def half_written_metrics(run: Path):
    lines = (run / "metrics.csv").read_text().splitlines()
    (run / "metrics.csv").write_text("\n".join(lines[:4]) + "\n")


def missing_metrics(run: Path):
    (run / "metrics.csv").unlink()


def edit_header(**fields):
    def fault(run: Path):
        header = json.loads((run / "run.json").read_text())
        header.update(fields)
        (run / "run.json").write_text(json.dumps(header))
    return fault


def drop_header_field(name: str):
    def fault(run: Path):
        header = json.loads((run / "run.json").read_text())
        del header[name]
        (run / "run.json").write_text(json.dumps(header))
    return fault


def edit_metrics(change):
    """change(lines) -> lines, on metrics.csv's lines (the header first)."""
    def fault(run: Path):
        lines = (run / "metrics.csv").read_text().splitlines()
        (run / "metrics.csv").write_text("\n".join(change(lines)) + "\n")
    return fault


def set_cell(row: int, column: str, value: str):
    def change(lines):
        header = lines[0].split(",")
        cells = lines[row].split(",")
        cells[header.index(column)] = value
        return [*lines[:row], ",".join(cells), *lines[row + 1:]]
    return edit_metrics(change)


def foreign_run_json(run: Path):
    (run / "run.json").write_text(json.dumps({"status": "finished", "name": "another tool's run", "score": 0.9}))


def batch_top1_over_100(run: Path):
    lines = (run / "batch_accuracy.csv").read_text().splitlines()
    lines[1] = ",".join(lines[1].split(",")[:-1] + ["300.0"])
    (run / "batch_accuracy.csv").write_text("\n".join(lines) + "\n")


# Each a damage seen in the issue-22 red team or of the same kind: a record that must never be averaged.
WRONG_VALUES = {
    "duplicated rows": (edit_metrics(lambda lines: lines + lines[1:4]), "intervals 1, 2, 3"),
    "more rows than epochs": (edit_header(epochs=6), "20 intervals for a run of epochs=6"),
    "a row shifted left": (edit_metrics(lambda lines: [*lines[:5], lines[5].split(",", 1)[1], *lines[6:]]),
                           "row 6 has 9 fields for the header's 10"),
    "a row with an extra field": (edit_metrics(lambda lines: [*lines[:3], "9," + lines[3], *lines[4:]]),
                                  "row 4 has 11 fields"),
    "every row with an extra field": (edit_metrics(lambda lines: [lines[0]] + ["9," + line for line in lines[1:]]),
                                      "row 2 has 11 fields"),
    "rows out of order": (edit_metrics(lambda lines: [lines[0], lines[2], lines[1], *lines[3:]]), "not 1..20 in order"),
    "top-1 of 250": (set_cell(20, "test_top1", "250.0"), "test_top1=250.0 at interval 20 of a finished run"),
    "negative top-1": (set_cell(3, "train_top1", "-4"), "train_top1=-4.0 at interval 3"),
    "NaN loss in a finished run": (set_cell(20, "train_loss", "nan"), "train_loss=nan at interval 20"),
    "empty test top-1 in a finished run": (set_cell(7, "test_top1", ""), "test_top1=nan at interval 7"),
    "infinite test loss": (set_cell(2, "test_loss", "inf"), "test_loss=inf at interval 2"),
    "text where a number belongs": (set_cell(4, "seconds", "soon"), "seconds=soon at interval 4"),
    "updates that fall": (set_cell(5, "updates", "3"), "updates are not a rising count"),
    "negative epochs": (edit_header(epochs=-6), "epochs=-6 is not a whole number >= 1"),
    "epochs a string": (edit_header(epochs="20"), 'epochs="20" is not a whole number >= 1'),
    "seed a dict": (edit_header(seed={"value": 2}), 'seed={"value": 2} is not a whole number'),
    "seed true": (edit_header(seed=True), "seed=true is not a whole number"),
    "config a string": (edit_header(config="lr=0.05"), 'config="lr=0.05" is not an object'),
    "delta 5": (edit_header(delta=5), "delta=5 is not a number in (0, 1]"),
    "an unknown status": (edit_header(status="done"), 'status="done" is not a string'),
    "model a number": (edit_header(model=18), "model=18 is not a string"),
    "no dataset": (drop_header_field("dataset"), "not a run record of this code (it has no dataset)"),
    "a foreign run.json": (foreign_run_json, "not a run record of this code (it has no config, model"),
    "a batch top-1 of 300": (batch_top1_over_100, "batch_accuracy.csv: a row is not a split"),
}


@pytest.mark.parametrize("fault,reason", WRONG_VALUES.values(), ids=WRONG_VALUES.keys())
def test_a_record_with_wrong_values_is_unreadable_with_its_reason_never_averaged(runs, fault, reason):
    fault(runs / VICTIM)
    table = summarise_runs(load_records(runs), RULES)
    victim = table[table["run_dir"] == str(runs / VICTIM)].iloc[0]
    assert victim["status"] == "unreadable" and reason in str(victim["error"]), victim["error"]
    assert not victim["included"]
    assert table["included"].sum() == len(GOOD) - 1, "the other five runs still enter the means"


def test_a_diverged_runs_last_row_may_hold_its_divergence(runs):
    edit_header(status="diverged", error="training loss became nan in interval 20")(runs / VICTIM)
    set_cell(20, "seen_train_loss", "nan")(runs / VICTIM)
    set_cell(20, "train_loss", "")(runs / VICTIM)
    table = summarise_runs(load_records(runs), RULES)
    assert table[table["run_dir"] == str(runs / VICTIM)].iloc[0]["status"] == "diverged"


def test_make_tables_never_crashes_and_lists_every_damaged_record(runs, tmp_path, capsys):
    from hardsamples import tables

    for i, (fault, _) in enumerate(WRONG_VALUES.values()):
        damaged = runs / f"damaged-{i:02d}"
        shutil.copytree(runs / VICTIM, damaged)
        fault(damaged)
    out = tmp_path / "out"
    assert tables.main([f"runs={runs}", f"out={out}", "figures=false", "table2=false"]) == 0, capsys.readouterr().err
    report = (out / "tables.md").read_text()
    for i in range(len(WRONG_VALUES)):
        assert f"damaged-{i:02d}" in report
    assert report.count("unreadable") >= len(WRONG_VALUES)


def test_a_wandb_run_of_another_tool_is_unreadable_not_a_crash():
    from hardsamples.analysis.loading import load_wandb

    class Run:
        id, name, state, config, summary = "abc", "other", "finished", {"lr": 0.1}, {}

        def scan_history(self):
            return []

    class Api:
        def runs(self, path, filters=None):
            return [Run()]

    table = load_wandb(None, "p", None, api=Api())
    assert table.iloc[0]["status"] == "unreadable" and "not a run of this code" in table.iloc[0]["error"]


FAULTS = {"run.json a list": (corrupt_run_json_list, "unreadable", "not a run record"),
          "empty metrics.csv": (empty_metrics, "unreadable", "metrics.csv"),
          "metrics.csv missing columns": (metrics_without_columns, "unreadable", "missing column"),
          "binary batch_accuracy.csv": (binary_batch_accuracy, "unreadable", "batch_accuracy.csv"),
          "half-written metrics.csv": (half_written_metrics, "incomplete", "3 of 20 intervals"),
          "missing metrics.csv": (missing_metrics, "incomplete", "0 of 20 intervals")}


@pytest.mark.parametrize("fault,status,reason", FAULTS.values(), ids=FAULTS.keys())
def test_a_bad_record_is_listed_with_its_reason_and_never_averaged(runs, fault, status, reason):
    fault(runs / VICTIM)
    table = summarise_runs(load_records(runs), RULES)
    victim = table[table["run_dir"] == str(runs / VICTIM)].iloc[0]
    assert victim["status"] == status and reason in str(victim["error"])
    assert not victim["included"]
    assert table["included"].sum() == len(GOOD) - 1, "the other five runs still enter the means"


def test_a_sweep_job_that_failed_before_run_json_is_listed_as_failed(runs):
    job = runs / "test_resnet-fashion_mnist-hard_batches-d0.5-s0"
    job.mkdir()
    (job / "job.json").write_text(json.dumps({"outcome": "failed", "error": "ConfigError: delta=... bad"}))
    table = summarise_runs(load_records(runs), RULES)
    row = table[table["run_dir"] == str(job)].iloc[0]
    assert row["status"] == "failed" and "ConfigError" in row["error"] and not row["included"]


def test_make_tables_finishes_and_lists_every_bad_run(runs, tmp_path):
    corrupt_run_json_list(runs / VICTIM)
    half_written_metrics(runs / GOOD[0])
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "hardsamples.tables", f"runs={runs}", f"out={out}",
                             "figures=false", "table2=false"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = (out / "tables.md").read_text()
    assert "unreadable" in report and "incomplete" in report
    assert "not a run record" in report and "3 of 20 intervals" in report
