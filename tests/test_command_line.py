"""The training command line is read before Hydra sees it: whatever Hydra would answer with a block of lines
and exit code 1 (a value it cannot parse, a sweep without -m, a group added or deleted, a misspelt hydra.*
key, a group of options replaced by one value) is one line naming the fix, and exit code 2 (issue 22)."""

from __future__ import annotations

import pytest

from conftest import TINY, run_cli
from hardsamples.config_checks.command_line import check_command_line

REFUSED = {
    "~ in a value": (["run_name=a~b"], r"cannot read 'run_name=a~b' .*: quote a value"),
    "= in a value": (["run_name=a=b"], r"cannot read 'run_name=a=b' .*: quote a value"),
    "non-ASCII value": (["run_name=é"], r"cannot read 'run_name=é' .*: quote a value"),
    "unclosed list": (["optimizer.lr=[1,2"], r"cannot read 'optimizer.lr=\[1,2' .*: quote a value"),
    "two equals": (["delta==0.5"], r"cannot read 'delta==0.5' \(two '='\): write delta=0.5"),
    "no equals": (["delta"], r"'delta' is not key=value: write e.g. delta=<value>"),
    "sweep without -m": (["seed=0,1"], r"seed=0,1 is a sweep .* in a single run: add -m .*\"seed='0,1'\""),
    "comma in a value": (["dataset.name=a,b"], r"dataset.name=a,b is a sweep .*: add -m"),
    "range without -m": (["seed=range(0,3)"], r"seed=range\(0,3\) is a sweep .*: add -m"),
    "a group added": (["+experiment=demo"], r"\+experiment=demo adds the group experiment, which every run already"
                                            r" has: write experiment=demo without the '\+'"),
    "a group deleted": (["~model"], r"~model deletes model, which a run reads: set it instead"),
    "a key deleted": (["~delta"], r"~delta deletes delta, which a run reads: "),
    "an option of a group deleted": (["~optimizer.momentum"], r"~optimizer.momentum deletes optimizer.momentum"),
    "misspelt hydra key": (["hydra.job.chdirr=true"], r"Could not override 'hydra.job.chdirr'.*did you mean"
                                                      r" hydra.job.chdir\?"),
    "misspelt launcher key": (["-m", "seed=0,1", "launcher=joblib", "hydra.launcher.n_job=2"],
                              r"Could not override 'hydra.launcher.n_job'.*did you mean hydra.launcher.n_jobs\?"),
    "optimizer=adam": (["optimizer=adam"], r"optimizer=adam replaces the group of options optimizer \(lr, momentum,"
                                           r" weight_decay\) with one value: .*optimizer.lr=0.005.*optimizer._target_"),
    "options replaced by a value": (["record=false"], r"record=false replaces the group of options record "),
    "a key added that exists": (["+seed=1"], r"\+seed=1 adds seed, which the config already has: write seed=1"
                                            r" without the '\+'"),
    "an unknown option": (["--frobnicate"], r"unknown option --frobnicate: Hydra's are .*--multirun.*; everything"
                                            r" else is key=value"),
}


@pytest.mark.parametrize("args,message", REFUSED.values(), ids=REFUSED.keys())
def test_what_hydra_answers_with_a_block_is_one_line_and_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as stop:
        check_command_line([*TINY, *args])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert __import__("re").search(message, err), err


ACCEPTED = {
    "a sweep with -m": ["-m", "seed=0,1"],
    "a sweep in an experiment": ["experiment=demo", "seed=0,1"],
    "quoted special characters": ["run_name='a=b,c~é'"],
    "a user's optimizer without momentum": ["++optimizer._target_=torch.optim.AdamW", "~optimizer.momentum"],
    "a hydra key spelt right": ["hydra.job.chdir=false", "hydra.run.dir=/tmp/x"],
    "help": ["--help"],
    "a group choice": ["model=resnet50", "dataset=synthetic"],
}


@pytest.mark.parametrize("args", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_a_good_command_line_passes_the_checks(args):
    check_command_line([*TINY, *args])


@pytest.mark.slow
def test_a_hydra_parse_error_on_the_real_command_line_is_one_line_exit_2(tmp_path):
    result = run_cli([*TINY, "run_name=a~b", f"hydra.run.dir={tmp_path / 'run'}"])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "quote a value" in lines[0], result.stderr[-2000:]
    assert not (tmp_path / "run").exists()
