"""`python -m hardsamples.tables` and `python -m hardsamples.bench` as a user meets them: --help, and a
mistyped or bad option refused in one line with exit code 2, nothing run and nothing written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT

from hardsamples import cli, tables
from hardsamples.bench import speed
from hardsamples.errors import ConfigError

ENTRY_POINTS = ["hardsamples.tables", "hardsamples.bench"]


def entry(module: str, *args: str, cwd) -> subprocess.CompletedProcess:
    """The module as `make tables` / `make bench` runs it, from cwd, with the checkout's src/ importable."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_unknown_option_is_one_line_and_exit_2(module, tmp_path):
    result = entry(module, "typo=1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown option 'typo'"), lines
    assert f"conf/{module.split('.')[-1]}.yaml" in lines[0] and "--help" in lines[0]
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("module, key", [("hardsamples.tables", "convergence.guards.smooth"),
                                         ("hardsamples.bench", "repeats")])
def test_help_lists_options_and_runs_nothing(module, key, tmp_path):
    result = entry(module, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"usage: python -m {module} [key=value ...]" in result.stdout
    assert f"\n  {key}=" in result.stdout  # every option, nested ones dotted, with its default
    assert result.stderr == ""
    assert list(tmp_path.iterdir()) == []  # no results/ (nor outputs/): nothing ran


@pytest.mark.parametrize("main", [tables.main, speed.main])
def test_short_help_flag_anywhere(main, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["out_dir=x" if main is speed.main else "out=x", "-h"]) == 0
    assert "usage: python -m hardsamples." in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_help_shows_the_yaml_comments_and_the_chosen_profile():
    full = cli.help_text(speed.USAGE, "bench", speed.settings(["profile=full"]), hidden=("profiles",))
    assert "\n  batch_size=512" in full and "\n  profile=full" in full  # the full profile's values
    assert "profiles." not in full.split("options")[1]
    cpu = cli.help_text(speed.USAGE, "bench", speed.settings(["profile=cpu", "repeats=9"]), hidden=("profiles",))
    assert "\n  batch_size=4" in cpu and "\n  repeats=9 " in cpu  # an override is the option's current value
    assert "writes <out_dir>/<device name>.csv" in cpu  # the comment on the key's line in bench.yaml


def test_bench_profile_keys_are_overridden_by_name():
    s = speed.settings(["profile=cpu", "repeats=9", "models=[resnet18]"])
    assert (s.repeats, list(s.models), s.batch_size, s.profile) == (9, ["resnet18"], 4, "cpu")
    assert speed.settings(["profile=auto", "device=cpu"]).profile == "cpu"  # auto: full only on CUDA


@pytest.mark.parametrize("args, expected", [
    (["repeats=abc"], "repeats=abc is not a whole number"),
    (["repeats=0"], "repeats=0 is too small"),
    (["num_batches=4"], "num_batches=4 is too small"),
    (["models=resnet18"], "write it in brackets, e.g. models=[resnet18]"),
    (["models=[no_such_net]"], "no_such_net (in models) is not a timm model"),
    (["profile=gpu"], "profile=gpu is unknown: use one of auto, cpu, full"),
    (["device=tpu"], "device=tpu is not a device a run can train on"),
    (["device=mps"], "device=mps is not a device the bench runs on"),
    (["compile=maybe"], "compile=maybe is not one of its choices: use false, true"),
    (["runtimes=[fast]"], "runtimes=['fast'] must name each protocol once, from clean, paper_code"),
    (["runtimes=clean"], "write it in brackets, e.g. runtimes=[paper_code,clean]"),
    (["repeat=3"], "unknown option 'repeat': did you mean repeats?"),
    (["+repeats=3"], "neither adds nor deletes options"),
    (["repeats=3,5"], "is a sweep"),
    (["projection=3"], "replaces the group of options projection"),
    (["repeats"], "cannot read 'repeats'"),
])
def test_bad_bench_values_are_one_line(args, expected, capsys):
    assert speed.main(["profile=cpu", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


def test_settings_raise_config_error_not_exit():
    with pytest.raises(ConfigError, match="unknown option 'typo'"):
        speed.settings(["typo=1"])
