"""Shared helpers: compose the real Hydra config and run the real training code, in-process or as a CLI."""

from __future__ import annotations

import os

# One thread in this process and every process a test starts (inherited): tiny models run faster
# than with two, and runs compared across processes use the same float reduction order.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from hardsamples.layout import CONF_DIR
from hardsamples.train import run

ROOT = Path(__file__).resolve().parents[1]
CONF = CONF_DIR
# Tiny and fast: a 0.4M-parameter timm ResNet on synthetic 16 x 16 images, W&B off, on the CPU even where
# CUDA is visible: tests compare with CPU references (exact losses, no TF32, determinism). The tests
# about CUDA name their device (tests/test_cuda.py).
TINY_RUN = ["model.name=test_resnet", "image_size=16", "batch_size=64", "epochs=3", "logger.wandb.mode=disabled",
            "device=cpu"]
TINY_DATA = ["dataset=synthetic", "dataset.num_train=600", "dataset.num_test=128", "dataset.native_size=16"]
TINY = TINY_RUN + TINY_DATA


def compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def train_in_process(run_dir: Path, overrides: list[str], base: list[str] = TINY) -> str:
    """Compose conf/ with base + overrides and train into run_dir; returns the run's status."""
    return run(compose_config(base + overrides), Path(run_dir))


def run_cli(args: list[str], cwd: Path = ROOT, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run([sys.executable, "-m", "hardsamples.train", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def read_metrics(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "metrics.csv")


@pytest.fixture
def tiny():
    return list(TINY)
