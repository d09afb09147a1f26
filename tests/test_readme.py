"""The README cannot drift from the repository: its sample outputs are the committed study's tables,
and its map of the code names every module and folder there is, and nothing that is not."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_the_readme_samples_are_the_committed_tables():
    result = subprocess.run([sys.executable, "tools/readme_samples.py", "--check"], cwd=ROOT)
    assert result.returncode == 0, "README.md is stale: run `python tools/readme_samples.py` and commit it"


def code_map() -> str:
    section = README.split("## Map of the code", 1)[1]
    return section.split("```", 2)[1]


def test_the_code_map_names_every_module_and_folder_of_the_package():
    names = set(re.findall(r"[\w./-]+", code_map()))
    package = ROOT / "src" / "hardsamples"
    modules = {p.name for p in package.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    folders = {p.name + "/" for p in package.iterdir() if p.is_dir() and not p.name.startswith("__")}
    missing = sorted((modules | folders) - names)
    assert not missing, f"the README's map of the code does not name: {missing}"


def test_every_path_the_code_map_names_exists():
    listed = re.findall(r"^\s*([\w./-]+/|[\w-]+\.py)\s", code_map(), flags=re.M)
    places = [ROOT / "src" / "hardsamples", ROOT / "src" / "hardsamples" / "analysis",
              ROOT / "src" / "hardsamples" / "bench", ROOT, ROOT / "src"]
    ghosts = [name for name in listed if not any((place / name).exists() for place in places)]
    assert not ghosts, f"the README's map names paths that do not exist: {ghosts}"
