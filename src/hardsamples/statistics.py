"""The few formulas behind the tables: Student-t intervals, Delta-e and Table 6's change.

Kept apart so the tests can hold each one against its definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """Mean and half-width of a two-sided t-interval; half_width is NaN with fewer than 2 values."""

    mean: float
    half_width: float
    n: int

    def text(self, digits: int = 2) -> str:
        if self.n == 0:
            return "-"
        if self.n == 1:
            return f"{self.mean:.{digits}f} (1 seed, no CI)"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


def t_interval(values, confidence: float = 0.95) -> Interval:
    """Student t over the values (n - 1 degrees of freedom): mean +/- t * s / sqrt(n).

    NaNs are dropped first. With one value there is no interval (half-width NaN), and the tables
    say so rather than print one.
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    if n == 1:
        return Interval(float(x[0]), math.nan, 1)
    sem = x.std(ddof=1) / math.sqrt(n)
    return Interval(float(x.mean()), float(stats.t.ppf((1 + confidence) / 2, n - 1) * sem), n)


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
