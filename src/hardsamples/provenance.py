"""Which code ran: the package version and the source commit that run.json records.

The commit is looked up where it can be known, in this order:
  1. git, when this package is a tracked part of a git checkout (not a copy installed into a
     virtual environment that happens to lie inside some repository), with '-dirty' when the
     checkout has uncommitted changes to tracked files;
  2. the environment variable HARDSAMPLES_SOURCE_COMMIT, for a copy of the tree without .git (the GPU
     kit exports it from the commit prepare.sh wrote);
  3. the installed distribution's PEP 610 record (direct_url.json), which pip writes with the commit
     for an install from a git URL (`pip install git+https://...@<commit>`).
Otherwise it is unknown (null): a plain wheel built from a checkout carries no commit.
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

SOURCE_COMMIT_ENV = "HARDSAMPLES_SOURCE_COMMIT"
DISTRIBUTION = "hardsamples"
HERE = Path(__file__).resolve().parent


def package_version() -> str | None:
    """The version of the code that runs: a source tree's pyproject.toml (src/ layout, whether
    installed editable or only on PYTHONPATH), else the installed distribution's metadata."""
    pyproject = HERE.parents[1] / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        if project.get("name") == DISTRIBUTION and project.get("version"):
            return str(project["version"])
    except (OSError, ValueError):
        pass
    distribution = own_distribution()
    return distribution.version if distribution is not None else None


def source_commit() -> str | None:
    return git_commit() or os.environ.get(SOURCE_COMMIT_ENV, "").strip() or wheel_commit()


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, timeout=10)


def git_commit() -> str | None:
    """HEAD of the checkout this package is part of; None outside one, or when git ignores this
    directory (e.g. an installed copy in a .venv inside a repository: HEAD would not be its commit)."""
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0 or git("check-ignore", "-q", str(HERE)).returncode == 0:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")


def own_distribution() -> metadata.Distribution | None:
    """The installed distribution whose files are this very package, or None (a source tree on
    PYTHONPATH, or another copy of the package installed elsewhere)."""
    try:
        distribution = metadata.distribution(DISTRIBUTION)
        installed = Path(distribution.locate_file("hardsamples/__init__.py")).resolve()
    except (metadata.PackageNotFoundError, OSError, TypeError):
        return None
    return distribution if installed == HERE / "__init__.py" else None


def wheel_commit() -> str | None:
    """The commit pip recorded for an install from a git URL (PEP 610 direct_url.json, vcs_info)."""
    distribution = own_distribution()
    try:
        direct_url = json.loads(distribution.read_text("direct_url.json") or "{}") if distribution else {}
    except ValueError:
        return None
    commit = direct_url.get("vcs_info", {}).get("commit_id") if isinstance(direct_url, dict) else None
    return str(commit) if commit else None
