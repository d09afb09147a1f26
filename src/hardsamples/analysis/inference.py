"""The statistics behind the tables, each from scipy or statsmodels, kept apart so the tests can hold
each one against its definition.

  t_interval        mean +/- t(1 - a/2, n - 1) s / sqrt(n) over seeds; `bounds` clips it to a bounded
                    scale (top-1 in [0, 100], e in [1, E]) and says so.
  paired            differences delta - (delta = 1) paired by seed: t-interval on the mean difference,
                    scipy.stats.bootstrap (BCa) where n allows, paired t-test (scipy.stats.ttest_rel),
                    effect size d_z = mean(d) / sd(d).
  paired_ratio      the same on log(e_1 / e_delta): a geometric-mean speed ratio with its interval.
  tost_paired       equivalence: statsmodels ttost_paired (two one-sided paired t-tests) against a
                    plan's margin, on differences or on log ratios.
  holm              statsmodels multipletests(method="holm") over the cells of one table.
  seeds_needed      statsmodels TTestPower: seeds for a paired t-test to detect a given difference
                    at the observed spread of the paired differences.
  best_of_k_null    Table 6's selection baseline: best of k deltas against delta = 1 when no delta
                    has any effect.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

# t(0.975, n - 1) for n = 2 is 12.7: an interval over two seeds is mostly that factor.
MIN_SEEDS = 3


@dataclass(frozen=True)
class Interval:
    """Mean and a two-sided t-interval [low, high]; half_width is NaN with fewer than 2 values.
    `clipped` says the interval was cut at the bounds of its scale."""

    mean: float
    half_width: float
    n: int
    low: float = math.nan
    high: float = math.nan
    clipped: bool = False

    def text(self, digits: int = 2) -> str:
        if self.n == 0:
            return "-"
        if self.n == 1:
            return f"{self.mean:.{digits}f} (1 seed, no CI)"
        body = (f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]" if self.clipped
                else f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}")
        return body + few_seeds(self.n)


def few_seeds(n) -> str:
    """The warning beside an interval from fewer than MIN_SEEDS seeds."""
    return f" ⚠n={int(n)}" if 1 < n < MIN_SEEDS else ""


def t_interval(values, confidence: float = 0.95, bounds: tuple[float, float] | None = None) -> Interval:
    """Student t over the values (n - 1 degrees of freedom): mean +/- t * s / sqrt(n), NaNs dropped.

    With one value there is no interval (half-width NaN). `bounds` clips [low, high] to the scale's
    range (the half-width stays the unclipped one, for the CSV)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    if n == 1:
        return Interval(float(x[0]), math.nan, 1)
    mean = float(x.mean())
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    low, high = mean - half, mean + half
    if bounds is None:
        return Interval(mean, half, n, low, high)
    clipped_low, clipped_high = max(low, bounds[0]), min(high, bounds[1])
    return Interval(mean, half, n, clipped_low, clipped_high, (clipped_low, clipped_high) != (low, high))


@dataclass(frozen=True)
class Paired:
    """delta minus delta = 1 over n seeds present in both (estimate and intervals on the stated scale)."""

    n: int
    estimate: float = math.nan  # mean difference; for paired_ratio the geometric-mean ratio e_1 / e_delta
    low: float = math.nan  # t-interval
    high: float = math.nan
    boot_low: float = math.nan  # scipy.stats.bootstrap, BCa (NaN when n < bootstrap_min)
    boot_high: float = math.nan
    p_value: float = math.nan  # paired t-test, two-sided
    effect_size: float = math.nan  # d_z = mean(d) / sd(d)
    sd: float = math.nan  # sd of the paired differences (on the log scale for a ratio)


def paired(x, y, confidence: float = 0.95, bootstrap_min: int = 5, resamples: int = 9999) -> Paired:
    """x - y over seeds present in both (NaN in either drops the pair; the caller counts those)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    d = x[keep] - y[keep]
    n = len(d)
    if n == 0:
        return Paired(0)
    if n == 1:
        return Paired(1, float(d[0]))
    interval = t_interval(d, confidence)
    sd = float(d.std(ddof=1))
    with warnings.catch_warnings():  # identical differences: scipy warns and returns NaN; we report sd = 0
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_rel(x[keep], y[keep]).pvalue) if sd > 0 else (1.0 if d[0] == 0 else 0.0)
    boot = _bootstrap(d, confidence, resamples) if n >= bootstrap_min else (math.nan, math.nan)
    return Paired(n, interval.mean, interval.low, interval.high, *boot, p,
                  interval.mean / sd if sd > 0 else math.nan, sd)


def _bootstrap(d: np.ndarray, confidence: float, resamples: int) -> tuple[float, float]:
    if np.ptp(d) == 0:
        return float(d[0]), float(d[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=resamples,
                                 method="BCa", random_state=0)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_ratio(e_one, e_delta, confidence: float = 0.95, bootstrap_min: int = 5, resamples: int = 9999) -> Paired:
    """e_1 / e_delta per seed, analysed on the log scale and reported back as a ratio (> 1: delta
    converges in fewer epochs). Non-positive or NaN entries drop the pair."""
    one, other = np.asarray(e_one, dtype=float), np.asarray(e_delta, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_one, log_other = np.log(np.where(one > 0, one, np.nan)), np.log(np.where(other > 0, other, np.nan))
    r = paired(log_one, log_other, confidence, bootstrap_min, resamples)
    return Paired(r.n, math.exp(r.estimate) if r.n else math.nan, math.exp(r.low), math.exp(r.high),
                  math.exp(r.boot_low), math.exp(r.boot_high), r.p_value, r.effect_size, r.sd)


def tost_paired(x, y, low: float, high: float, log_scale: bool = False) -> float:
    """Two one-sided paired t-tests (statsmodels ttost_paired) of low < mean(x - y) < high, or with
    log_scale of low < x / y < high as a difference of logs: the p-value of "not equivalent" (the larger
    of the two one-sided p-values). Pairs with a NaN (or, on logs, a non-positive value) are dropped;
    NaN with fewer than 2 pairs. Identical differences give 0 inside the margin and 1 outside it."""
    from statsmodels.stats.weightstats import ttost_paired

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if log_scale:
        with np.errstate(divide="ignore", invalid="ignore"):
            x, y = np.log(np.where(x > 0, x, np.nan)), np.log(np.where(y > 0, y, np.nan))
        low, high = math.log(low), math.log(high)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if len(x) < 2:
        return math.nan
    d = x - y
    if np.ptp(d) == 0:  # no spread: the t statistics are infinite, the answer is known
        return 0.0 if low < d[0] < high else 1.0
    return float(ttost_paired(x, y, low, high)[0])


def ratio_to_delta_e_pct(ratio: float) -> float:
    """Delta-e (%) = (e_1 / e_delta - 1) x 100: the paper's Delta-e, a speed ratio."""
    return (ratio - 1.0) * 100.0


def ratio_to_fewer_epochs_pct(ratio: float) -> float:
    """(1 - e_delta / e_1) x 100: how many fewer epochs delta needs, the reading the abstract gives."""
    return (1.0 - 1.0 / ratio) * 100.0


def holm(p_values, alpha: float = 0.05) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels) over the non-NaN entries; NaN stays NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), math.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=alpha, method="holm")[1]
    return out


def seeds_needed(sd: float, difference: float = 1.0, alpha: float = 0.05, power: float = 0.8,
                 most: int = 5000) -> float:
    """Seeds (pairs) for a two-sided paired t-test at `alpha` to detect `difference` with `power`, when
    the paired differences spread with sd `sd`: the smallest n >= 2 whose power (statsmodels
    TTestPower) reaches it; NaN past `most`. Searched rather than solved: the solver has no root below
    2 and statsmodels' noncentral t returns NaN where the power is 1 to machine precision."""
    from statsmodels.stats.power import TTestPower

    if sd is None or math.isnan(sd):
        return math.nan
    if sd == 0:
        return 2.0
    n = np.arange(2, most + 1)
    effect = difference / sd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reached = TTestPower().power(effect_size=effect, nobs=n, alpha=alpha, alternative="two-sided")
    reached = np.where(np.isnan(reached) & (effect * np.sqrt(n) > 8), 1.0, reached)
    hit = np.flatnonzero(reached >= power)
    return float(n[hit[0]]) if len(hit) else math.nan


def sign_test(earlier: int, later: int) -> float:
    """Two-sided sign test (scipy binomtest) on pairs whose order is known; ties and unknowns left out."""
    n = earlier + later
    return float(stats.binomtest(earlier, n, 0.5).pvalue) if n else math.nan


@functools.lru_cache(maxsize=None)
def _best_of_k_draws(k: int, draws: int = 200_000, seed: int = 0) -> np.ndarray:
    """max(Z_1..Z_k) - Z_0 for independent standard normals: sorted, for quantiles and tail areas."""
    z = np.random.default_rng(seed).standard_normal((draws, k + 1))
    return np.sort(z[:, 1:].max(axis=1) - z[:, 0])


@dataclass(frozen=True)
class BestOfK:
    expected_gain: float  # E[best - base] under no effect, in the unit of sigma_mean
    p_best_wins: float  # P(best > base) under no effect: k / (k + 1)
    upper95: float  # 95th percentile of best - base under no effect
    p_value: float  # P(best - base >= observed) under no effect (NaN without an observation)


def best_of_k_null(k: int, sigma_mean: float, observed: float = math.nan) -> BestOfK:
    """Best of k delta means minus the delta = 1 mean when every delta has the same distribution, each
    mean with standard error sigma_mean (the seed spread / sqrt(seeds))."""
    if k < 1 or not sigma_mean > 0:
        return BestOfK(math.nan, k / (k + 1) if k >= 1 else math.nan, math.nan, math.nan)
    draws = _best_of_k_draws(k) * sigma_mean
    p = float(1.0 - np.searchsorted(draws, observed) / len(draws)) if np.isfinite(observed) else math.nan
    return BestOfK(float(draws.mean()), k / (k + 1), float(np.quantile(draws, 0.95)), p)


def residual_sd(table) -> tuple[float, int]:
    """The run-to-run sd of top-1 left after each seed's shared part (same initial weights in every
    delta): residual of the two-way (delta x seed) layout over seeds present in every delta, with
    (D - 1)(S - 1) degrees of freedom. Returns (sd, seeds used); NaN when fewer than 2 seeds."""
    complete = table.dropna(axis=1)  # rows: deltas, columns: seeds
    d, s = complete.shape
    if d < 2 or s < 2:
        return math.nan, s
    x = complete.to_numpy(dtype=float)
    resid = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + x.mean()
    return float(math.sqrt((resid ** 2).sum() / ((d - 1) * (s - 1)))), s


def delta_e_pct(e_one: float, e_delta: float) -> float:
    """Delta-e (%) = (e_1 - e_delta) / e_delta x 100: positive when delta converges earlier than 1.0."""
    if e_delta is None or e_one is None or math.isnan(e_one) or math.isnan(e_delta) or e_delta == 0:
        return math.nan
    return (e_one - e_delta) / e_delta * 100.0


def best_change_pct(best: float, base: float) -> float:
    """Table 6: (best - base) / best x 100, best = top test top-1 over delta < 1, base = delta 1.0."""
    if best is None or base is None or math.isnan(best) or math.isnan(base) or best == 0:
        return math.nan
    return (best - base) / best * 100.0
