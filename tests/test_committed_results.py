"""The committed study's tables regenerate from its committed records, so they can never drift from the code.

`make study` wrote results/fashion_mnist/ (records under runs/, tables beside them). This test runs the
tables tool on those records into a temporary folder and requires every committed table file, and no
other, to come out byte for byte the same. A change to the statistics or the table layout therefore
fails here until the committed tables are regenerated (`make tables RUNS=results/fashion_mnist/runs
OUT=results/fashion_mnist ARGS=paper_consistency=true`, as `make study` does) and committed with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

STUDY = ROOT / "results" / "fashion_mnist"
TABLE_SUFFIXES = {".md", ".csv", ".tex"}


def table_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.suffix in TABLE_SUFFIXES}


def test_the_study_records_are_complete_and_hold_no_checkpoints():
    runs = sorted((STUDY / "runs").glob("*/run.json"))
    assert len(runs) == 35, "7 arms x 5 seeds (conf/experiment/fashion_mnist*.yaml)"
    for path in runs:
        assert json.loads(path.read_text())["status"] == "finished", path
        assert (path.parent / "metrics.csv").is_file() and (path.parent / "batch_accuracy.csv").is_file()
    tracked = subprocess.run(["git", "ls-files", str(STUDY)], cwd=ROOT, capture_output=True, text=True).stdout
    assert "checkpoint.pt" not in tracked and "/wandb/" not in tracked


def test_the_committed_tables_regenerate_identically(tmp_path):
    committed = table_files(STUDY)
    assert committed, "no committed tables under results/fashion_mnist"
    result = subprocess.run([sys.executable, "-m", "hardsamples.tables", "runs=results/fashion_mnist/runs",
                             f"out={tmp_path}", "figures=false", "paper_consistency=true"],  # as make study
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    regenerated = table_files(tmp_path)
    assert sorted(regenerated) == sorted(committed)
    drifted = [name for name in committed if regenerated[name] != committed[name]]
    if drifted:
        pytest.fail(f"tables drifted from the committed ones: {drifted}; regenerate with "
                    "`make tables RUNS=results/fashion_mnist/runs OUT=results/fashion_mnist ARGS=paper_consistency=true`"
                    " and commit")


def test_make_study_would_skip_every_committed_run():
    """Each committed run's config is what its grid composes today (records.previous_run compares them),
    so `make study` skips every run instead of training the study again after a change to conf/."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from hardsamples.layout import CONF_DIR
    from hardsamples.records import previous_run

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for path in sorted((STUDY / "runs").glob("*/run.json")):
            config = json.loads(path.read_text())["config"]
            method = config["method"]
            if "method_delta" in config:  # the controls grid sweeps the method and looks up its delta
                option = "hard_batches_refresh" if method.get("refresh") else method["name"]
                overrides = ["experiment=fashion_mnist_controls", f"method={option}"]
            else:
                overrides = ["experiment=fashion_mnist", "method=hard_batches", f"delta={config['delta']}"]
            cfg = compose(config_name="config", overrides=[*overrides, f"seed={config['seed']}"])
            assert previous_run(path.parent, OmegaConf.to_container(cfg, resolve=True)) is not None, path
