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
