"""Algorithms 1 and 2 as docs/DESIGN.md defines them, checked from the run record and trace."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import read_metrics, train_in_process

# TINY: 600 samples, batch 64, drop_last -> N = 9 batches; 0.8, 0.5 and 0.2 x 9 are not whole numbers.
N, E = 9, 3


def expected_k(delta: float) -> int:
    """The same under both protocols at N = 9: int(delta x 9) and floor(delta x 9) agree for these."""
    return {1.0: 9, 0.8: 7, 0.5: 4, 0.2: 1}[delta]


def trained(tmp_path, delta, *extra):
    run_dir = tmp_path / f"d{delta}"
    status = train_in_process(run_dir, [f"delta={delta}", "record.trace=true", *extra])
    assert status == "finished"
    return run_dir, pd.read_csv(run_dir / "trace.csv"), json.loads((run_dir / "run.json").read_text())


@pytest.mark.parametrize("delta", [1.0, 0.8, 0.5, 0.2])
def test_budget_is_exactly_n_times_e_updates_with_e_evaluations(tmp_path, delta):
    run_dir, trace, header = trained(tmp_path, delta)
    metrics = read_metrics(run_dir)
    assert header["num_batches"] == N and header["k"] == expected_k(delta)
    assert header["update_budget"] == N * E and header["status"] == "finished"
    assert len(trace) == N * E
    assert trace["update"].tolist() == list(range(1, N * E + 1))
    assert metrics["interval"].tolist() == list(range(1, E + 1))
    assert metrics["updates"].tolist() == [N * t for t in range(1, E + 1)]


def replay_hard_batches(trace: pd.DataFrame, k: int, round_order: str, tie_order: str, n: int = N) -> None:
    """Re-derive every round's choice from the losses the trace says were stored at its start."""
    first_round = trace[trace["round"] == 0]
    assert first_round["batch"].tolist() == list(range(n)), "round 0 trains every batch once, in order"
    stored = dict(zip(first_round["batch"], first_round["loss"]))
    ranking = list(range(n))  # round 0's order
    for round_index, rows in trace[trace["round"] > 0].groupby("round", sort=True):
        # Sort by loss, descending. Ties: previous_rank (paper_code) re-sorts last round's ranking with a
        # stable sort, as the authors; batch_index (clean) sends them to the lower index. Batches not
        # trained keep their stale loss.
        if tie_order == "previous_rank":
            ranking = sorted(ranking, key=lambda b: -stored[b])
        else:
            ranking = sorted(stored, key=lambda b: (-stored[b], b))
        ranked = ranking[:k]
        expected = sorted(ranked) if round_order == "index" else ranked
        is_last = round_index == trace["round"].max()
        chosen = rows["batch"].tolist()
        assert chosen == (expected[: len(chosen)] if is_last else expected), f"round {round_index}"
        stored.update(zip(rows["batch"], rows["loss"]))


def tie_order(header: dict) -> str:
    return header["config"]["fidelity"]["tie_order"]


@pytest.mark.parametrize("delta", [0.8, 0.5, 0.2])
def test_rounds_train_the_k_hardest_by_stale_stored_loss_in_index_order(tmp_path, delta):
    _, trace, header = trained(tmp_path, delta)
    replay_hard_batches(trace, expected_k(delta), "index", tie_order(header))


def test_clean_rounds_train_the_k_hardest_with_ties_to_the_lower_index(tmp_path):
    # clean pads the last batch: N = 10, and k = floor(0.5 x 10) = 5.
    _, trace, header = trained(tmp_path, 0.5, "fidelity=clean")
    assert (header["num_batches"], header["k"], tie_order(header)) == (10, 5, "batch_index")
    replay_hard_batches(trace, 5, "index", "batch_index", n=10)


def test_loss_order_option_trains_hardest_first(tmp_path):
    _, trace, header = trained(tmp_path, 0.5, "method.round_order=loss")
    replay_hard_batches(trace, expected_k(0.5), "loss", tie_order(header))
    # Loss order differs from index order in at least one round, or the option would be untested.
    later = trace[trace["round"] > 0].groupby("round")["batch"].apply(list)
    assert any(batches != sorted(batches) for batches in later)


def test_last_round_is_cut_to_fit_the_budget(tmp_path):
    _, trace, _ = trained(tmp_path, 0.5)
    # 27 updates = 9 (round 0) + 4 x 4 + 2: the fifth later round is cut to 2 batches.
    sizes = trace.groupby("round").size().tolist()
    assert sizes == [9, 4, 4, 4, 4, 2]


def test_delta_one_is_algorithm_one_fixed_batches_in_order_every_epoch(tmp_path):
    _, trace, header = trained(tmp_path, 1.0)
    assert header["method"] == "standard"
    assert trace["batch"].tolist() == list(range(N)) * E
    assert trace["round"].tolist() == [r for r in range(E) for _ in range(N)]
    assert (trace["kept"] == 64).all()


def test_seen_train_loss_is_the_mean_of_the_trained_batches_losses(tmp_path):
    run_dir, trace, _ = trained(tmp_path, 0.2)
    metrics = read_metrics(run_dir)
    per_interval = trace.groupby((trace["update"] - 1) // N)["loss"].mean().tolist()
    assert metrics["seen_train_loss"].tolist() == pytest.approx(per_interval, rel=1e-6)
