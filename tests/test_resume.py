"""A run killed with SIGKILL in the middle of a round and rerun ends with the same record as a run never
interrupted: model, optimizer, the policy's stored losses, the cut round, RNG and rows (the mechanism
probe's too) all come back from the checkpoint.

delta = 0.8 with N = 9 batches gives k = 7: rounds end at updates 9, 16, 23, 30, 37, 44, 51, so the
checkpoints after intervals 2 to 5 (updates 18, 27, 36, 45) all fall inside a round.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import TINY, run_cli

pytestmark = pytest.mark.slow  # kills a training subprocess and resumes it: `make test-fast` leaves it out

ARGS = [*TINY, "epochs=6", "delta=0.8", "record.trace=true", "record.round_losses=true"]
RUN = "test_resnet-synthetic-hard_batches-d0.8-s0"
ENV = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def start(cwd: Path, sweep_name: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hardsamples.train", *ARGS, f"sweep_name={sweep_name}", *extra],
                            cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def rows(path: Path) -> int:
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def kill_after_interval(proc: subprocess.Popen, run_dir: Path, interval: int, timeout: float = 240) -> None:
    """SIGKILL once `interval` rows are written, so the checkpoint of interval - 1 is surely on disk."""
    deadline = time.monotonic() + timeout
    while rows(run_dir / "metrics.csv") < interval:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def without_seconds(path: Path) -> pd.DataFrame:
    """A record without its wall-clock columns, the only ones a resume may change."""
    return pd.read_csv(path).drop(columns=["seconds", "train_seconds"], errors="ignore")


def test_a_killed_run_resumes_to_the_record_of_an_uninterrupted_run(tmp_path):
    reference = start(tmp_path, "reference")  # the same run, never interrupted, alongside
    victim = start(tmp_path, "killed")
    killed_dir = tmp_path / "results/runs/killed" / RUN
    kill_after_interval(victim, killed_dir, interval=3)
    assert reference.wait(timeout=300) == 0

    saved = torch.load(killed_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert 18 <= saved["loop"]["updates"] < 54 and saved["loop"]["pending_ids"] is not None, "killed inside a round"
    interrupted = json.loads((killed_dir / "run.json").read_text())
    assert interrupted["status"] == "running"

    # The rerun goes through the sweep path (-m): the summary counts it as resumed.
    result = run_cli(["-m", *ARGS, "sweep_name=killed"], cwd=tmp_path, env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming at update {saved['loop']['updates']} of 54" in result.stdout + result.stderr
    assert "0 finished, 1 resumed, 0 skipped, 0 diverged, 0 failed" in result.stdout

    reference_dir = tmp_path / "results/runs/reference" / RUN
    for name in ("metrics.csv", "trace.csv", "round_losses.csv", "batch_accuracy.csv"):
        pd.testing.assert_frame_equal(without_seconds(killed_dir / name), without_seconds(reference_dir / name),
                                      check_exact=True, obj=name)
    header = json.loads((killed_dir / "run.json").read_text())
    assert header["status"] == "finished" and header["resumed_from"] == [saved["loop"]["updates"]]
    assert header["run_id"] == interrupted["run_id"]  # so W&B resumes the same run
    assert rows(killed_dir / "metrics.csv") == 6 and rows(killed_dir / "trace.csv") == 54
    assert rows(killed_dir / "round_losses.csv") == 5  # the probe: intervals 2 to 6, none lost or repeated

