"""A study plan's endpoints, equivalence tests, verdicts and mechanism check, on records the tests write."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from statsmodels.stats.weightstats import ttost_paired

from hardsamples.analysis.endpoints import at_budget, best_value, reach_time, value_at
from hardsamples.analysis.inference import tost_paired
from hardsamples.analysis.mechanism import overlap_with, run_measures
from hardsamples.errors import ConfigError
from hardsamples.analysis.plan import load_plan
from hardsamples.record_files import ROUND_LOSS_COLUMNS, write_csv
from test_tables import tables_for, write_run

# ---------------------------------------------------------------------------------- endpoints


def test_reach_time_interpolates_between_evaluations():
    curve = [90.0, 95.0, 98.0, 99.5, 100.0]
    assert reach_time(curve, 99.0) == pytest.approx(3 + (99.0 - 98.0) / (99.5 - 98.0))
    assert reach_time(curve, 98.0) == 3.0  # exactly at an evaluation
    assert reach_time([99.5, 100.0], 99.0) == 1.0  # past it at the first evaluation: 1, an upper bound
    assert math.isnan(reach_time([90.0, 95.0, 98.9], 99.0))  # never reached: censored
    assert math.isnan(reach_time([90.0, float("nan"), 99.5], 99.0))  # a gap before the crossing: no time
    # a loss reaches its threshold going down
    assert reach_time([1.0, 0.5, 0.1], 0.3, higher_is_better=False) == pytest.approx(2 + (0.3 - 0.5) / (0.1 - 0.5))


def test_value_at_a_share_of_the_budget():
    curve = [10.0, 20.0, 30.0, 40.0]
    assert at_budget(curve, 0.5, 4) == 20.0  # t = 2
    assert at_budget(curve, 0.25, 10) == pytest.approx(25.0)  # t = 2.5 of a 10-interval run: halfway from 20 to 30
    assert math.isnan(value_at(curve, 0.5)) and math.isnan(value_at(curve, 5))
    assert best_value([1.0, 3.0, 2.0]) == (3.0, 2)


# ---------------------------------------------------------------------------------- equivalence


def test_tost_is_statsmodels_and_the_two_one_sided_t_tests():
    x = np.array([88.1, 87.6, 88.4, 87.9, 88.3, 88.0])
    y = np.array([88.0, 87.9, 88.1, 88.2, 88.1, 87.7])
    d = x - y
    se = d.std(ddof=1) / math.sqrt(len(d))
    by_hand = max(stats.t.sf((d.mean() + 0.5) / se, len(d) - 1), stats.t.cdf((d.mean() - 0.5) / se, len(d) - 1))
    assert tost_paired(x, y, -0.5, 0.5) == pytest.approx(ttost_paired(x, y, -0.5, 0.5)[0])
    assert tost_paired(x, y, -0.5, 0.5) == pytest.approx(by_hand)
    assert tost_paired(x, y, -0.5, 0.5) < 0.05 < tost_paired(x, y, -0.05, 0.05)
    # on logs: an equivalence interval for a ratio
    t1, t2 = np.array([20.0, 22.0, 19.0, 21.0]), np.array([20.5, 21.5, 19.2, 20.8])
    assert tost_paired(t1, t2, 1 / 1.08, 1.08, log_scale=True) == pytest.approx(
        ttost_paired(np.log(t1), np.log(t2), -math.log(1.08), math.log(1.08))[0])
    # identical differences: no spread, the answer is known; a NaN drops its pair
    assert tost_paired([1.0, 2.0], [1.0, 2.0], -0.5, 0.5) == 0.0
    assert tost_paired([1.0, 2.0], [0.0, 1.0], -0.5, 0.5) == 1.0
    assert math.isnan(tost_paired([1.0, np.nan], [1.0, 2.0], -0.5, 0.5))


# ---------------------------------------------------------------------------------- the reach comparator


def test_reach_comparator_is_delta_1_over_the_seeds_delta_reached(tmp_path):
    """'Epochs to reach delta = 1's best' compares like with like: delta = 1's own time over the seeds
    where delta got there, not over every seed."""
    base = {0: [2.0, 1.0, 0.5, 0.2, 0.1, 0.1], 1: [2.0, 1.5, 1.0, 0.8, 0.5, 0.3], 2: [2.0, 1.0, 0.4, 0.3, 0.2, 0.2]}
    mine = {0: [2.0, 0.5, 0.1, 0.1, 0.1, 0.1], 1: [2.0, 1.9, 1.8, 1.7, 1.6, 1.5], 2: [2.0, 0.2, 0.2, 0.2, 0.2, 0.2]}
    for seed in base:
        write_run(tmp_path, delta=1.0, seed=seed, epochs=6, losses=base[seed])
        write_run(tmp_path, delta=0.5, seed=seed, epochs=6, losses=mine[seed])
    _, _, rows = tables_for(tmp_path)
    row = rows[rows["delta"] == 0.5].iloc[0]
    assert row["reach_train_loss_reached"] == 2  # seed 1 never gets to delta = 1's best (0.3)
    # delta = 1 reaches its own (smoothed) best at t = 5, 6, 5; over seeds 0 and 2 only: 5
    assert row["reach_train_loss_base_epochs"] == pytest.approx(5.0)


# ---------------------------------------------------------------------------------- verdicts


def write_plan(path, **changes) -> str:
    plan = {"name": "toy", "alpha": 0.05, "where": {"dataset": "cifar10"}, "baseline": "base", "min_pairs": 3,
            "arms": {"base": {"method": "standard", "delta": 1.0}, "same": {"method": "hard_batches", "delta": 0.8},
                     "better": {"method": "hard_batches", "delta": 0.5}, "noisy": {"method": "hard_batches", "delta": 0.2},
                     "random": {"method": "random_batches", "delta": 0.2}},
            "comparisons": [{"arm": "same", "against": "base", "about_hardness": True},
                            {"arm": "better", "against": "base", "about_hardness": True},
                            {"arm": "noisy", "against": "base", "about_hardness": True},
                            {"arm": "noisy", "against": "random", "about_hardness": True}],
            "endpoints": {"final": {"kind": "final", "metric": "test_top1", "margin": 0.5, "family": "primary",
                                    "label": "final test top-1"},
                          "reach": {"kind": "reach", "metric": "train_top1", "threshold": 99.0, "margin": 1.08,
                                    "family": "primary", "label": "epochs to 99% train top-1",
                                    "max_censored_share": 0.2}},
            "mechanism": {"min_lift": 1.05, "random_arm": "random", "arms": ["same", "better", "noisy"]}}
    plan.update(changes)
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return str(path)


SEEDS = range(8)
JITTER = [0.03, -0.02, 0.01, -0.03, 0.02, -0.01, 0.0, 0.02]  # seed-to-seed noise shared by every arm's pair
RNG = np.random.default_rng(0)
NOISE = RNG.normal(0, 2.0, len(SEEDS))


def write_study(root, lift=1.3):
    """base; `same`: within 0.05 pp of base; `better`: +3 pp; `noisy`: +/- 2 pp at random (inconclusive);
    `random` as base. Train top-1 reaches 99% at interval 3 (+ jitter) in every arm but `noisy`, which never
    does in 3 of 8 seeds."""
    for seed in SEEDS:
        base_test = 85.0 + seed * 0.3
        climb = [95.0, 98.0, 99.5 + JITTER[seed], 100.0, 100.0]
        arms = {("standard", 1.0): (base_test, climb), ("hard_batches", 0.8): (base_test + JITTER[seed], climb),
                ("hard_batches", 0.5): (base_test + 3.0 + JITTER[seed], climb),
                ("hard_batches", 0.2): (base_test + NOISE[seed], climb if seed > 2 else [95.0, 96.0, 97.0, 98.0, 98.5]),
                ("random_batches", 0.2): (base_test, climb)}
        for (method, delta), (test, train) in arms.items():
            run_dir = write_run(root, method=method, delta=delta, seed=seed, epochs=5, test_top1=test, train_curve=train,
                                num_batches=10)
            if delta < 1.0:
                write_round_losses(run_dir, lift=1.0 if method == "random_batches" else lift, seed=seed)


def write_round_losses(run_dir, lift: float, seed: int, k: int = 2, rounds: int = 4):
    rows = []
    for r in range(1, rounds + 1):
        fresh = 1.0 + 0.1 * r
        chosen = (seed + r) % 10, (seed + r + 5) % 10
        rows.append({"round": r, "updates": 10 * r, "k": k, "fresh_mean": fresh,
                     "chosen_fresh_mean": fresh * (lift + 0.01 * ((seed + r) % 3 - 1)), "fresh_sd": 0.2,
                     "random_sd": 0.1, "stored_mean": fresh, "chosen_stored_mean": fresh * 1.5, "fresh_overlap": 0.5,
                     "chosen": format(sum(1 << i for i in chosen), "x")})
    write_csv(run_dir / "round_losses.csv", ROUND_LOSS_COLUMNS, rows)


def verdict_table(tmp_path, lift=1.3, **plan_changes):
    write_study(tmp_path / "runs", lift=lift)
    plan = write_plan(tmp_path / "plan.yaml", **plan_changes)
    sections, _, _ = tables_for(tmp_path / "runs", plan=plan)
    return sections


def test_verdicts_equivalent_different_inconclusive_censored(tmp_path):
    sections = verdict_table(tmp_path)
    table = sections["plan_verdicts"].data.set_index(["endpoint", "arm", "against"])
    assert table.loc[("final", "same", "base"), "verdict"] == "equivalent"
    assert table.loc[("final", "better", "base"), "verdict"] == "different"
    assert table.loc[("final", "better", "base"), "estimate"] == pytest.approx(3.0 + np.mean(JITTER))
    assert table.loc[("final", "noisy", "base"), "verdict"] == "inconclusive"
    reach = table.loc[("reach", "noisy", "base")]
    assert reach["verdict"] == "censored" and reach["censored_pairs"] == 3 and reach["arm_censored"] == 3
    assert table.loc[("reach", "same", "base"), "verdict"].startswith("equivalent")
    # Holm over the family: every test of both primary endpoints
    family = sections["plan_verdicts"].data
    assert (family["p_holm"].dropna() >= family["p"].dropna()).all()
    # the rendering: one line per comparison and endpoint, verdict in words
    display = sections["plan_verdicts"].display
    assert len(display) == 8 and set(display["verdict"]) >= {"equivalent", "different", "inconclusive", "censored"}


def test_mechanism_live_when_chosen_batches_are_harder_vacuous_when_not(tmp_path):
    live = verdict_table(tmp_path / "live", lift=1.3)
    mech = live["plan_mechanism"].data.set_index("arm")
    assert mech.loc["noisy", "live"] and mech.loc["noisy", "lift"] == pytest.approx(1.3, abs=0.01)
    assert mech.loc["noisy", "lift_vs_random"] == pytest.approx(0.3, abs=0.01)
    assert not mech.loc["random", "live"]  # the random arm's choice is no harder than random, by construction
    assert "vacuous" not in " ".join(live["plan_verdicts"].data["verdict"])

    flat = verdict_table(tmp_path / "flat", lift=1.0)  # chosen batches as hard as all batches: a vacuous test
    assert not flat["plan_mechanism"].data.set_index("arm").loc["noisy", "live"]
    verdicts = flat["plan_verdicts"].data.set_index(["endpoint", "arm", "against"])["verdict"]
    assert verdicts[("final", "better", "base")] == "different (vacuous: the chosen batches were not harder than random ones)"


def test_mechanism_measures_of_one_run():
    rounds = pd.DataFrame({"chosen_fresh_mean": [1.2, 1.5], "fresh_mean": [1.0, 1.0], "fresh_sd": [0.3, 0.2],
                           "random_sd": [0.1, 0.1], "fresh_overlap": [0.75, 0.5]})
    measures = run_measures(rounds)
    assert measures == {"lift": pytest.approx(1.35), "spread": pytest.approx(2.5), "refresh_change": pytest.approx(0.375),
                        "probed_rounds": 2}
    assert overlap_with({1: 0b0011, 2: 0b1100}, {1: 0b0110, 2: 0b1100, 3: 0b1}) == pytest.approx(0.75)


def test_a_bad_plan_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="is not a file"):
        load_plan(tmp_path / "missing.yaml")
    bad = write_plan(tmp_path / "bad.yaml", comparisons=[{"arm": "nobody", "against": "base"}])
    with pytest.raises(ConfigError, match="names arm 'nobody'"):
        load_plan(bad)
    (tmp_path / "empty.yaml").write_text("name: x\n")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_plan(tmp_path / "empty.yaml")


def test_the_mechanism_figure_is_drawn_from_the_probed_arms(tmp_path):
    from hardsamples.analysis.report import build, plan_figure
    from hardsamples.tables import compose

    write_study(tmp_path / "runs")
    plan = write_plan(tmp_path / "plan.yaml")
    cfg = compose([f"runs={tmp_path / 'runs'}", f"out={tmp_path / 'out'}", f"plan={plan}", "table2=false"])
    _, _, runs, _ = build(cfg)
    written = plan_figure(runs, cfg)
    assert sorted(p.name for p in written) == ["mechanism.pdf", "mechanism.png"]
    assert all(p.stat().st_size > 1000 for p in written)
