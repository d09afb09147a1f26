"""`python -m hardsamples.tables` as `make tables` calls it."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from conftest import ROOT, train_in_process

from hardsamples.analysis.columns import DELTA
from hardsamples.tables import main


def tables_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hardsamples.tables", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_missing_directory_is_one_line_and_nonzero(tmp_path):
    """As `make tables RUNS=<missing>` runs it: a separate process, its exit status and stderr."""
    runs = tmp_path / "runs"
    result = tables_cli(f"runs={runs}", f"out={tmp_path / 'out'}", "source=records")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "expected" in lines[0] and "run.json" in lines[0] and str(runs) in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, expected", [
    (["runs={empty}"], "expected run.json files"),
    (["runs="], "runs= is empty"),
    (["runs={empty}", "convergence.rule=magic"], "convergence.rule=magic"),
    (["runs={empty}", "no_such_option=1"], "no_such_option"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, expected):
    (tmp_path / "empty").mkdir()
    assert main([a.format(empty=tmp_path / "empty") for a in args] + [f"out={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


def test_end_to_end_from_two_trained_runs(tmp_path, capsys):
    runs = tmp_path / "runs"
    for delta in (1.0, 0.5):
        status = train_in_process(runs / f"d{delta}", [f"delta={delta}", "epochs=3", "record.checkpoint=false"])
        assert status == "finished"
    out = tmp_path / "tables"
    assert main([f"runs={runs}", f"out={out}", "source=records"]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out / "delta_synthetic.csv")
    assert list(table.columns[:4]) == ["dataset", "model", "network", "delta"]
    assert set(DELTA.csv) - {"settings"} <= set(table.columns)  # no setting varied: no column for one
    assert list(table["delta"]) == [1.0, 0.5] and (table["n_seeds"] == 1).all()
    assert table["test_top1_mean"].between(0, 100).all()
    # three intervals cannot confirm convergence (hold window 3): e is censored, counted, never averaged
    assert (table["e_mean"].between(1, 3) | (table["e_censored"] == 1)).all()
    # the Markdown tables go to the terminal too
    assert "## Per-delta table: synthetic (not in the paper) — setup paper_code, E=3" in printed
    assert "| network     | δ   | seeds   | train top-1" in printed
    assert "(1 seed, no CI)" in printed
    assert "Paper consistency" not in printed  # no record of the paper's datasets: auto leaves it out
    for name in ("tables.md", "tables.tex", "table6.csv", "table1.csv", "table2.csv", "sensitivity.csv", "runs.csv"):
        assert (out / name).exists(), name
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == [f"synthetic_test_resnet_paper_code_E3_B64_16px.{s}" for s in ("pdf", "png")]
