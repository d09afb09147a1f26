"""The committed studies' tables regenerate from their committed records, so they can never drift from the code.

`make study` wrote results/fashion_mnist_memorise/ and `make study-underfit` results/fashion_mnist/
(records under runs/, tables beside them). This test runs the tables tool on those records into a
temporary folder and requires every committed table file, and no other, to come out byte for byte
the same. A change to the statistics or the table layout therefore fails here until the committed
tables are regenerated (the `make tables` line of each study in the Makefile, paper_consistency=true
included) and committed with it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT


@dataclass(frozen=True)
class Study:
    folder: str
    runs: int  # arms x seeds
    grids: tuple  # (experiment, its controls): what `make study` sweeps
    plan: str | None = None

    @property
    def path(self) -> Path:
        return ROOT / "results" / self.folder

    def tables_args(self, out) -> list[str]:
        return [f"runs=results/{self.folder}/runs", f"out={out}", "figures=false", "paper_consistency=true"] + (
            [f"plan=results/{self.folder}/{self.plan}"] if self.plan else [])


STUDIES = [Study("fashion_mnist_memorise", 70, ("fashion_mnist_memorise", "fashion_mnist_memorise_controls"),
                 plan="plan.yaml"),
           Study("fashion_mnist", 35, ("fashion_mnist", "fashion_mnist_controls"))]
TABLE_SUFFIXES = {".md", ".csv", ".tex"}


def table_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.suffix in TABLE_SUFFIXES
            and p.name != "PLAN.md"}


@pytest.mark.parametrize("study", STUDIES, ids=lambda s: s.folder)
def test_the_study_records_are_complete_and_hold_no_checkpoints(study):
    runs = sorted((study.path / "runs").glob("*/run.json"))
    assert len(runs) == study.runs, f"arms x seeds (sweeps/{study.grids[0]}*.yaml)"
    for path in runs:
        assert json.loads(path.read_text())["status"] == "finished", path
        assert (path.parent / "metrics.csv").is_file() and (path.parent / "batch_accuracy.csv").is_file()
    tracked = subprocess.run(["git", "ls-files", str(study.path)], cwd=ROOT, capture_output=True, text=True).stdout
    assert "checkpoint.pt" not in tracked and "/wandb/" not in tracked


@pytest.mark.parametrize("study", STUDIES, ids=lambda s: s.folder)
def test_the_committed_tables_regenerate_identically(study, tmp_path):
    committed = table_files(study.path)
    assert committed, f"no committed tables under results/{study.folder}"
    result = subprocess.run([sys.executable, "-m", "hardsamples.tables", *study.tables_args(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    regenerated = table_files(tmp_path)
    assert sorted(regenerated) == sorted(committed)
    drifted = [name for name in committed if regenerated[name] != committed[name]]
    if drifted:
        pytest.fail(f"tables drifted from the committed ones: {drifted}; regenerate with "
                    f"`python -m hardsamples.tables {' '.join(study.tables_args(study.path))}` (figures too) and commit")


@pytest.mark.parametrize("study", STUDIES, ids=lambda s: s.folder)
def test_make_study_would_skip_every_committed_run(study):
    """Each committed run's config is what its grid composes today (records.previous_run compares them),
    so `make study` skips every run instead of training the study again after a change to conf/."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from hardsamples.layout import CONF_DIR
    from hardsamples.records import previous_run

    grid, controls = study.grids
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for path in sorted((study.path / "runs").glob("*/run.json")):
            config = json.loads(path.read_text())["config"]
            method = config["method"]
            if "method_delta" in config:  # the controls grid sweeps the method and looks up its delta
                option = "hard_batches_refresh" if method.get("refresh") else method["name"]
                overrides = [f"experiment={controls}", f"method={option}"]
            else:
                overrides = [f"experiment={grid}", "method=hard_batches", f"delta={config['delta']}"]
            cfg = compose(config_name="config", overrides=[*overrides, f"seed={config['seed']}"])
            assert previous_run(path.parent, OmegaConf.to_container(cfg, resolve=True)) is not None, path


def test_the_plan_was_committed_before_the_records():
    """The plan's point is that it was fixed first: its last change is older than the first record."""
    study = STUDIES[0]
    def first_commit(path: str) -> int:
        log = subprocess.run(["git", "log", "--format=%ct", "--reverse", "--", path], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
        return int(log[0]) if log else 0

    plan_changes = subprocess.run(["git", "log", "--format=%ct", "--", f"results/{study.folder}/plan.yaml"], cwd=ROOT,
                                  capture_output=True, text=True).stdout.split()
    records = first_commit(f"results/{study.folder}/runs")
    if not plan_changes or not records:
        pytest.skip("no git history here (a copied tree)")
    assert max(map(int, plan_changes)) <= records, "plan.yaml changed after the records were committed"


def test_every_interval_in_the_readme_answer_is_in_the_committed_tables():
    """The README's first paragraph states the verdicts with their intervals: each '[low, high]' it
    prints is the committed tables' own, so it recomputes from the records."""
    readme = (ROOT / "README.md").read_text()
    answer = readme.split("\n\n", 2)[1]
    intervals = re.findall(r"\[[^\]]*\d[^\]]*\]", answer)
    assert intervals, "the README's first paragraph states no interval"
    tables = (STUDIES[0].path / "tables.md").read_text()
    missing = [i for i in intervals if i not in tables]
    assert not missing, f"intervals in the README's answer that the committed tables do not print: {missing}"
