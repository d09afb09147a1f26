"""The wheel: built offline, installed into a fresh environment, its console scripts run from a directory
that is not the checkout, with the checkout's src/ nowhere on the path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from conftest import ROOT

pytestmark = pytest.mark.slow
PACKAGE = ROOT / "src" / "hardsamples"
TINY_RUN = ["model.name=test_resnet", "image_size=16", "batch_size=64", "epochs=1", "dataset=synthetic",
            "dataset.num_train=300", "dataset.num_test=128", "dataset.native_size=16", "logger.wandb.mode=disabled"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """pip wheel on a copy of the sources, so setuptools' build/ and egg-info never land in the checkout.
    The copy keeps the checkout's links (src/hardsamples/conf -> conf/, conf/experiment -> sweeps/):
    the build must turn them into files."""
    pytest.importorskip("setuptools")  # --no-build-isolation builds with this environment's setuptools
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    for folder in ("src", "conf", "sweeps"):
        shutil.copytree(ROOT / folder, source / folder, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                            "-w", str(tmp / "dist"), str(source)], check=True, capture_output=True, text=True, timeout=300)
    # No setuptools warning (the license is an SPDX string): `make setup` prints nothing but its own lines.
    assert "Warning" not in built.stdout + built.stderr, built.stderr[-2000:]
    (wheel_file,) = (tmp / "dist").glob("hardsamples-*.whl")
    return wheel_file


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; torch and the other dependencies come from this
    environment's site-packages through a .pth file. (`venv --system-site-packages` would inherit the
    base interpreter's packages, not this environment's.) Its .pth files are not processed, so an
    editable install of the checkout stays out."""
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    # installed before the .pth exists: pip sees an empty environment and touches no other one
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True, capture_output=True, text=True, timeout=300)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    inherited = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site / "inherited_dependencies.pth").write_text("".join(f"{path}\n" for path in inherited))
    return env_dir


def run_in(env_dir: Path, cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """A command of the installed environment, as a user runs it: PYTHONPATH unset, OMP one thread."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    env.update(OMP_NUM_THREADS="1", PATH=f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}")
    return subprocess.run([str(env_dir / "bin" / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_wheel_carries_the_configs_and_the_papers_numbers(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    conf, sweeps = ROOT / "conf", ROOT / "sweeps"
    wanted = {f"hardsamples/conf/{p.relative_to(conf).as_posix()}" for p in conf.rglob("*.yaml")}  # not into the link
    wanted |= {f"hardsamples/conf/experiment/{p.name}" for p in sweeps.glob("*.yaml")}
    wanted |= {f"hardsamples/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.glob("analysis/reference/*.csv")}
    assert any(name.startswith("hardsamples/conf/experiment/") for name in wanted)
    assert any(name.startswith("hardsamples/conf/method/") for name in wanted)
    assert wanted <= names, sorted(wanted - names)
    assert "hydra_plugins/hardsamples_launchers/launchers.py" in names  # conf/launcher/ names its classes
    assert "hardsamples-0.1.0.dist-info/licenses/LICENSE" in names
    entry_points = zipfile.ZipFile(wheel).read("hardsamples-0.1.0.dist-info/entry_points.txt").decode()
    for script in ("hardsamples-train = hardsamples.train:main", "hardsamples-tables = hardsamples.tables:main",
                   "hardsamples-bench = hardsamples.bench.speed:main"):
        assert script in entry_points


def test_installed_scripts_train_and_tabulate_outside_the_checkout(venv, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = run_in(venv, work, "python", "-c", "import hardsamples; print(hardsamples.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout  # the wheel's copy, not src/

    helped = run_in(venv, work, "hardsamples-train", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "== Configuration groups ==" in helped.stdout
    assert "experiment: demo, fashion_mnist" in helped.stdout  # the grids travel with the wheel

    trained = run_in(venv, work, "hardsamples-train", *TINY_RUN)
    assert trained.returncode == 0, trained.stderr[-3000:]
    (record,) = (work / "results" / "runs").rglob("run.json")
    assert json.loads(record.read_text())["status"] == "finished"

    # A user's own folder of images with a timm model the package has no config for, swept over a key
    # outside the run name (each value its own directory).
    images = work / "my_images"
    rng = np.random.default_rng(0)
    for split, count in (("train", 40), ("test", 12)):
        for label in ("cat", "dog"):
            folder = images / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    own = run_in(venv, work, "hardsamples-train", "-m", "dataset=image_folder", f"dataset.root={images}",
                 "dataset.name=pets", "model.name=test_efficientnet", "image_size=16", "batch_size=16", "epochs=2",
                 "delta=0.5", "optimizer.lr=0.01,0.05", "sweep_name=mine", "logger.wandb.mode=disabled")
    assert own.returncode == 0, own.stderr[-3000:]
    runs = sorted((work / "results" / "runs" / "mine").glob("*/run.json"))
    assert len(runs) == 2 and all(json.loads(r.read_text())["status"] == "finished" for r in runs)
    assert all(r.parent.name.startswith("test_efficientnet-pets-hard_batches-d0.5-s0-") for r in runs)

    tables = run_in(venv, work, "hardsamples-tables", "runs=results/runs", "out=tables", "figures=false")
    assert tables.returncode == 0, tables.stderr[-3000:]
    assert (work / "tables" / "tables.md").is_file() and (work / "tables" / "runs.csv").is_file()
    import pandas as pd

    pets = pd.read_csv(work / "tables" / "delta_pets.csv")  # the lr sweep: one row per lr, never averaged
    assert sorted(pets["optimizer.lr"]) == [0.01, 0.05] and (pets["n_seeds"] == 1).all()
    assert "Paper consistency" not in tables.stdout  # no record of the paper's datasets

    bench = run_in(venv, work, "hardsamples-bench", "--help")
    assert bench.returncode == 0, bench.stderr
    assert "usage: python -m hardsamples.bench" in bench.stdout and "repeats=" in bench.stdout
    assert not (work / "results" / "bench").exists()


def test_an_installed_wheel_reports_its_version_and_the_commit_pip_recorded(venv, tmp_path, monkeypatch):
    """A wheel carries no .git: the commit is the one pip records for an install from a git URL (PEP 610
    direct_url.json, written here as pip writes it), and none is made up for a plain wheel."""
    monkeypatch.delenv("HARDSAMPLES_SOURCE_COMMIT", raising=False)  # the GPU kit exports it
    probe = ("from hardsamples import records; "
             "print(records.git_commit(), records.versions()['hardsamples'])")
    plain = run_in(venv, tmp_path, "python", "-c", probe)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.split() == ["None", "0.1.0"]
    (dist_info,) = venv.glob("lib/python3*/site-packages/hardsamples-0.1.0.dist-info")
    commit = "0123456789abcdef0123456789abcdef01234567"
    (dist_info / "direct_url.json").write_text(json.dumps(
        {"url": "https://example.org/hardsamples.git", "vcs_info": {"vcs": "git", "commit_id": commit}}))
    try:
        from_git = run_in(venv, tmp_path, "python", "-c", probe)
    finally:
        (dist_info / "direct_url.json").unlink()
    assert from_git.returncode == 0, from_git.stderr
    assert from_git.stdout.split() == [commit, "0.1.0"]
