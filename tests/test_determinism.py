"""The same config and seed give the same numbers on the CPU."""

from __future__ import annotations

import pandas as pd

from conftest import read_metrics, train_in_process


def test_same_config_and_seed_give_identical_metrics_and_trace(tmp_path):
    overrides = ["delta=0.5", "record.trace=true", "seed=3"]
    assert train_in_process(tmp_path / "a", overrides) == "finished"
    assert train_in_process(tmp_path / "b", overrides) == "finished"
    # Every column but the wall clocks.
    a, b = (read_metrics(tmp_path / d).drop(columns=["seconds", "train_seconds"]) for d in "ab")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert (tmp_path / "a" / "trace.csv").read_bytes() == (tmp_path / "b" / "trace.csv").read_bytes()
    assert (tmp_path / "a" / "batch_accuracy.csv").read_bytes() == (tmp_path / "b" / "batch_accuracy.csv").read_bytes()


def test_another_seed_gives_other_numbers(tmp_path):
    assert train_in_process(tmp_path / "a", ["seed=0"]) == "finished"
    assert train_in_process(tmp_path / "b", ["seed=1"]) == "finished"
    assert not read_metrics(tmp_path / "a")["train_loss"].equals(read_metrics(tmp_path / "b")["train_loss"])
