"""run.json says which code ran: the package version and the commit, also where there is no .git (a copy
of the tree sent to a GPU machine, an installed wheel)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT, train_in_process
from hardsamples import provenance

PRINT = "from hardsamples import provenance; print(provenance.source_commit(), provenance.package_version())"


def copy_of_the_tree(where: Path) -> Path:
    """src/ and pyproject.toml copied without .git, as the GPU kit sends the tree."""
    shutil.copytree(ROOT / "src", where / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", where / "pyproject.toml")
    return where


def provenance_in(tree: Path, **env: str) -> list[str]:
    full_env = {k: v for k, v in os.environ.items() if k != provenance.SOURCE_COMMIT_ENV}
    full_env.update(PYTHONPATH=str(tree / "src"), **env)
    out = subprocess.run([sys.executable, "-c", PRINT], cwd=tree, env=full_env, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return out.split()


def version_in_pyproject() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_a_run_records_the_package_version_and_the_checkouts_commit(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("a copy without .git (the GPU kit's): its commit comes from the environment, tested below")
    assert train_in_process(tmp_path, ["epochs=1"]) == "finished"
    header = json.loads((tmp_path / "run.json").read_text())
    assert header["versions"]["hardsamples"] == version_in_pyproject()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert header["git_commit"] in (head, f"{head}-dirty")


def test_without_git_the_commit_comes_from_the_environment(tmp_path):
    tree = copy_of_the_tree(tmp_path / "copy")
    assert provenance_in(tree) == ["None", version_in_pyproject()]  # no .git, no variable: unknown, never a guess
    commit = "0123456789abcdef0123456789abcdef01234567"
    assert provenance_in(tree, HARDSAMPLES_SOURCE_COMMIT=commit) == [commit, version_in_pyproject()]


def test_a_copy_that_git_ignores_does_not_take_the_enclosing_repositorys_commit(tmp_path):
    """An installed copy in a .venv inside some repository: that repository's HEAD is not its commit."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    (repo / ".gitignore").write_text("venv/\n")
    subprocess.run([*git, "add", ".gitignore"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], cwd=repo, check=True)
    tree = copy_of_the_tree(repo / "venv")
    commit = "fedcba9876543210fedcba9876543210fedcba98"
    assert provenance_in(tree, HARDSAMPLES_SOURCE_COMMIT=commit)[0] == commit
