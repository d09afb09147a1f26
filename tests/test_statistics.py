"""The statistics of the tables against hand computations, statsmodels and a seeded simulation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hardsamples.analysis.inference import (
    best_of_k_null,
    holm,
    paired,
    paired_ratio,
    ratio_to_delta_e_pct,
    ratio_to_fewer_epochs_pct,
    residual_sd,
    seeds_needed,
    sign_test,
    t_interval,
)


def test_paired_difference_by_hand():
    delta = [61.0, 63.5, 60.0, 64.0]
    one = [60.0, 62.0, 60.5, 62.5]
    d = np.array([1.0, 1.5, -0.5, 1.5])  # delta - one, seed by seed
    mean, sd = d.mean(), d.std(ddof=1)  # 0.875, 0.9465
    half = 3.182446305 * sd / 2  # t(0.975, 3) x sd / sqrt(4)
    r = paired(delta, one)
    assert r.n == 4 and r.estimate == pytest.approx(0.875)
    assert (r.low, r.high) == pytest.approx((mean - half, mean + half))
    assert r.p_value == pytest.approx(2 * stats.t.sf(mean / (sd / 2), 3))
    assert r.effect_size == pytest.approx(mean / sd) and r.sd == pytest.approx(sd)
    assert math.isnan(r.boot_low)  # 4 pairs: below bootstrap_min


def test_paired_drops_missing_pairs_and_bootstraps_from_five():
    r = paired([1.0, 2.0, math.nan], [0.0, 0.5, 1.0])
    assert r.n == 2 and r.estimate == pytest.approx(1.25)
    x = np.array([1.0, 2.0, 3.0, 5.0, 4.0, 2.5])
    r = paired(x, np.zeros(6), resamples=999)
    assert r.n == 6 and r.boot_low < x.mean() < r.boot_high
    assert paired([1.0, 1.0, 1.0], [0.0, 0.0, 0.0]).sd == 0  # constant differences: no NaN trouble


def test_paired_ratio_on_the_log_scale():
    e_one, e_delta = [80, 90, 70], [74, 80, 70]
    logs = np.log(np.array(e_one) / np.array(e_delta))
    half = stats.t.ppf(0.975, 2) * logs.std(ddof=1) / math.sqrt(3)
    r = paired_ratio(e_one, e_delta)
    assert r.estimate == pytest.approx(math.exp(logs.mean()))
    assert (r.low, r.high) == pytest.approx((math.exp(logs.mean() - half), math.exp(logs.mean() + half)))
    # the abstract's 26.47%: e_1 = 43, e_delta = 34 is a 26.47% speed ratio, 20.93% fewer epochs
    ratio = paired_ratio([43], [34]).estimate
    assert ratio_to_delta_e_pct(ratio) == pytest.approx(26.47, abs=0.01)
    assert ratio_to_fewer_epochs_pct(ratio) == pytest.approx(20.93, abs=0.01)


def test_holm_matches_statsmodels_and_keeps_nan():
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.01, 0.04, 0.03, 0.005, 0.20])
    expected = multipletests(p, method="holm")[1]
    assert holm(p) == pytest.approx(expected)
    # by hand: sorted 0.005, 0.01, 0.03, 0.04, 0.2 times 5, 4, 3, 2, 1, made monotone
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.20])
    with_nan = holm([0.01, math.nan, 0.04])
    assert math.isnan(with_nan[1]) and with_nan[[0, 2]] == pytest.approx([0.02, 0.04])


def test_seeds_needed_against_statsmodels():
    from statsmodels.stats.power import TTestPower

    n = TTestPower().solve_power(effect_size=1 / 1.5, alpha=0.05, power=0.8, alternative="two-sided")
    assert seeds_needed(1.5) == math.ceil(n)
    assert seeds_needed(0.0) == 2 and math.isnan(seeds_needed(math.nan))
    assert seeds_needed(3.0) > seeds_needed(1.5)


def test_bounded_interval_is_clipped_and_says_so():
    interval = t_interval([99.9, 100.0, 99.5], bounds=(0, 100))
    assert interval.clipped and interval.high == 100.0 and interval.low < interval.mean
    assert interval.text().startswith("99.80 [") and "±" not in interval.text()
    two = t_interval([60.0, 62.0])
    assert "⚠n=2" in two.text() and two.half_width == pytest.approx(12.706 * math.sqrt(2) / math.sqrt(2), rel=1e-3)


def test_sign_test_is_scipys_binomtest():
    assert sign_test(9, 1) == pytest.approx(stats.binomtest(9, 10).pvalue)
    assert math.isnan(sign_test(0, 0))


def test_best_of_three_under_no_effect_against_a_simulation():
    """Table 6's selection baseline: 4 deltas x 5 seeds with no effect at all (seeded). The best of the
    three delta < 1 means beats delta = 1 in 3 of 4 experiments, by 0.85 standard errors on average."""
    rng = np.random.default_rng(1)
    sigma, seeds, experiments = 1.2, 5, 4000
    means = rng.normal(60.0, sigma, size=(experiments, 4, seeds)).mean(axis=2)  # delta 1, .8, .5, .2
    gain = means[:, 1:].max(axis=1) - means[:, 0]
    null = best_of_k_null(3, sigma / math.sqrt(seeds))
    se = sigma / math.sqrt(seeds)
    assert null.p_best_wins == 0.75 and (gain > 0).mean() == pytest.approx(0.75, abs=0.02)
    assert null.expected_gain == pytest.approx(gain.mean(), abs=0.03)
    assert null.expected_gain / se == pytest.approx(3 / (2 * math.sqrt(math.pi)), abs=0.01)  # E max of 3 normals
    assert null.upper95 == pytest.approx(np.quantile(gain, 0.95), abs=0.05)
    # the selection-adjusted p-value of an observed gain: uniform under no effect
    p = np.array([best_of_k_null(3, se, g).p_value for g in gain[:400]])
    assert (p < 0.05).mean() == pytest.approx(0.05, abs=0.03)


def test_residual_sd_removes_the_seed_effect():
    rng = np.random.default_rng(2)
    seed_effect = rng.normal(0, 5.0, size=6)  # big shared part per seed
    noise = rng.normal(0, 1.0, size=(4, 6))
    grid = pd.DataFrame(60 + seed_effect + noise, index=[1.0, 0.8, 0.5, 0.2])
    sd, seeds = residual_sd(grid)
    assert seeds == 6 and sd == pytest.approx(1.0, abs=0.35)
    grid.iloc[0, 0] = math.nan  # a seed missing at one delta is left out
    assert residual_sd(grid)[1] == 5
