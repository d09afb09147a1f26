"""The mechanism probe (record.round_losses): it measures without changing what the run computes, and
what it measures is right where the answer is known (a refreshed choice is the k hardest by definition)."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import read_metrics, train_in_process

WALL_CLOCK = ["seconds", "train_seconds"]


def probe_rows(run_dir) -> pd.DataFrame:
    return pd.read_csv(run_dir / "round_losses.csv", dtype={"chosen": str})


def chosen_ids(mask: str) -> list[int]:
    bits = int(mask, 16)
    return [i for i in range(bits.bit_length()) if bits >> i & 1]


def test_the_probe_changes_nothing_the_run_computes(tmp_path):
    args = ["delta=0.5", "epochs=4"]
    assert train_in_process(tmp_path / "plain", args) == "finished"
    assert train_in_process(tmp_path / "probed", args + ["record.round_losses=true"]) == "finished"
    pd.testing.assert_frame_equal(read_metrics(tmp_path / "plain").drop(columns=WALL_CLOCK),
                                  read_metrics(tmp_path / "probed").drop(columns=WALL_CLOCK), check_exact=True)
    assert not (tmp_path / "plain" / "round_losses.csv").exists()
    rows = probe_rows(tmp_path / "probed")
    # N = 9 batches, k = 4: one row per interval after the first, at the first round starting in it
    assert list(rows["updates"] // 9 + 1) == [2, 3, 4] and (rows["k"] == 4).all()
    assert all(len(chosen_ids(m)) == 4 for m in rows["chosen"])
    assert ((rows["fresh_overlap"] >= 0) & (rows["fresh_overlap"] <= 1)).all()
    assert (rows["random_sd"] > 0).all() and (rows["fresh_sd"] > 0).all()


def test_a_refreshed_choice_is_the_k_hardest_on_the_current_model(tmp_path):
    """With refreshed losses the policy chooses by the very losses the probe measures: its choice is the
    k hardest, so the overlap is 1 and the chosen batches are harder than the mean (lift > 1)."""
    assert train_in_process(tmp_path, ["method=hard_batches_refresh", "delta=0.5", "epochs=4",
                                       "record.round_losses=true"]) == "finished"
    rows = probe_rows(tmp_path)
    assert (rows["fresh_overlap"] == 1.0).all()
    assert (rows["chosen_fresh_mean"] > rows["fresh_mean"]).all()
    assert rows["chosen_stored_mean"].to_numpy() == pytest.approx(rows["chosen_fresh_mean"].to_numpy(), rel=1e-5)


def test_no_probe_rows_where_every_batch_trains(tmp_path):
    assert train_in_process(tmp_path, ["delta=1.0", "epochs=2", "record.round_losses=true"]) == "finished"
    assert not (tmp_path / "round_losses.csv").exists()
