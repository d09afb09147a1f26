"""The paper's SGD by default; a user's optimizer class with optimizer._target_, checked in one line."""

from __future__ import annotations

import json

import torch

from conftest import TINY, compose_config, run_cli
from hardsamples.loop import build_optimizer
from hardsamples.runtime import Runtime

CPU_RUNTIME = Runtime(torch.device("cpu"), "fp32", torch.contiguous_format)


def test_the_default_optimizer_is_the_papers_sgd():
    cfg = compose_config(TINY)
    optimizer = build_optimizer(cfg, torch.nn.Linear(2, 2), CPU_RUNTIME)
    assert type(optimizer) is torch.optim.SGD
    assert optimizer.defaults["lr"] == cfg.optimizer.lr and optimizer.defaults["momentum"] == cfg.optimizer.momentum


def test_a_users_optimizer_class_gets_the_other_optimizer_keys(tmp_path):
    overrides = ["++optimizer._target_=torch.optim.Adam", "~optimizer.momentum", "++optimizer.betas=[0.8,0.99]"]
    optimizer = build_optimizer(compose_config(TINY + overrides), torch.nn.Linear(2, 2), CPU_RUNTIME)
    assert type(optimizer) is torch.optim.Adam and optimizer.defaults["betas"] == (0.8, 0.99)
    result = run_cli([*TINY, "epochs=1", *overrides, f"hydra.run.dir={tmp_path}"], env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "run.json").read_text())["config"]["optimizer"]["_target_"] == "torch.optim.Adam"


def test_an_optimizer_that_cannot_take_the_keys_is_one_line_and_no_record(tmp_path):
    result = run_cli([*TINY, "++optimizer._target_=torch.optim.AdamW", f"hydra.run.dir={tmp_path}"],
                     env={"OMP_NUM_THREADS": "1"})
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert "optimizer._target_=torch.optim.AdamW cannot be built" in lines[0] and "momentum" in lines[0]
    assert not (tmp_path / "run.json").exists()


def test_a_typo_beside_a_users_optimizer_is_still_refused(tmp_path):
    result = run_cli([*TINY, "++optimizer._target_=torch.optim.Adam", "optimizer.lrr=0.1",
                      f"hydra.run.dir={tmp_path}"], env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 2 and "unknown key optimizer.lrr" in result.stderr
