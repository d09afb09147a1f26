"""Faults from outside the run: a full disk, a read-only sweep directory, keys that exist nowhere.
Each gives one line on stderr and exit code 2, and nothing that claims success."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest

from conftest import TINY, run_cli

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
# Imported first by the run's interpreter: the records' writes fail with ENOSPC after the first few.
FULL_DISK = """
import errno, os
import hardsamples.record_files as record_files
real, calls = record_files.write_atomic, [0]
def write_atomic(path, data):
    calls[0] += 1
    if calls[0] > int(os.environ["WRITES_BEFORE_FULL"]):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(path, data)
record_files.write_atomic = write_atomic
"""


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    return lines[0]


def test_a_full_disk_mid_run_is_one_line_and_a_rerun_resumes(tmp_path):
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(FULL_DISK)
    env = {**ONE_THREAD, "PYTHONPATH": f"{tmp_path / 'inject'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "WRITES_BEFORE_FULL": "4"}
    run_dir = tmp_path / "run"
    line = one_error_line(run_cli([*TINY, f"hydra.run.dir={run_dir}"], env=env))
    assert "No space left on device" in line and "run the same command again" in line
    header = json.loads((run_dir / "run.json").read_text())
    assert header["status"] != "finished"
    result = run_cli([*TINY, f"hydra.run.dir={run_dir}"], env=ONE_THREAD)  # space again: it goes on
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("override,closest", [("detla=0.5", "delta"), ("++detla=0.5", "delta"),
                                              ("optimizer.lrr=0.1", "optimizer.lr")])
def test_a_key_no_config_has_is_one_line_naming_the_closest(tmp_path, override, closest):
    line = one_error_line(run_cli([*TINY, override, f"hydra.run.dir={tmp_path / 'run'}"], env=ONE_THREAD))
    assert f"did you mean {closest}?" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override,message", [
    ("fidelity.eval_batchnorm=foo", "fidelity.eval_batchnorm=foo is not one of its choices: use train, eval"),
    ("fidelity.drop_last=1", "fidelity.drop_last=1 is not one of its choices: use true, false"),
    ("method.round_order=5", "method.round_order=5 is not one of its choices: use index, loss")])
def test_a_protocol_or_method_key_outside_its_choices_is_one_line(tmp_path, override, message):
    line = one_error_line(run_cli([*TINY, override, f"hydra.run.dir={tmp_path / 'run'}"], env=ONE_THREAD))
    assert message in line and not (tmp_path / "run").exists()


def test_a_read_only_sweep_directory_is_refused_before_hydra_writes_into_it(tmp_path, monkeypatch, capsys):
    # Root may write anywhere, so the check's answer is faked: what is tested is what follows from it.
    from hardsamples.config_checks.callback import ConfigCheck

    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    config = SimpleNamespace(hydra=SimpleNamespace(sweep=SimpleNamespace(dir=str(sweep_dir)),
                                                   overrides=SimpleNamespace(task=[])))
    monkeypatch.setattr("hardsamples.config_checks.callback.added_key_error", lambda config: None)
    with pytest.raises(SystemExit) as stop:
        ConfigCheck().on_multirun_start(config)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the sweep directory") and "not writable" in err and "\n" not in err
