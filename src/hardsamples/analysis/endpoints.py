"""A study plan's endpoints, read off one run's curves (one value per interval t = 1..E).

  final       the metric at the last interval (final test top-1: endpoint A of a plan).
  reach       epoch-equivalents to reach a fixed threshold (say train top-1 >= 99%), linearly
              interpolated between the two evaluations that bracket the first crossing: a
              continuous speed measure, where the paper's e is an integer on a 20- or 100-point
              axis. A curve that never reaches the threshold is censored (NaN here; the plan counts
              it and never averages it). A curve already past the threshold at its first evaluation
              gives 1.0, an upper bound, since nothing was measured before t = 1.
  at_budget   the metric at a fixed share of the budget, t = fraction x E (interpolated between
              evaluations when fraction x E is not a whole interval): test top-1 at 25% or 50% of E.
  best        the best value over the intervals, and where (trimming's curve: its best interval
              against its final one).
"""

from __future__ import annotations

import math

import numpy as np


def final_value(curve) -> float:
    values = np.asarray(curve, dtype=float)
    return float(values[-1]) if len(values) else math.nan


def reach_time(curve, threshold: float, higher_is_better: bool = True) -> float:
    """First t (1-based, fractional) at which the curve reaches `threshold`, linear between evaluations;
    NaN when it never does (censored) or the curve holds a non-finite value before reaching it."""
    values = np.asarray(curve, dtype=float)
    reached = values >= threshold if higher_is_better else values <= threshold
    hits = np.flatnonzero(reached)
    if not len(hits) or not np.isfinite(values[: hits[0] + 1]).all():
        return math.nan
    i = int(hits[0])
    if i == 0:
        return 1.0
    before, after = values[i - 1], values[i]
    return float(i + (threshold - before) / (after - before))  # t = i at index i - 1, t = i + 1 at index i


def value_at(curve, t: float) -> float:
    """The curve at epoch-equivalent t (1 <= t <= E), linear between evaluations; NaN outside."""
    values = np.asarray(curve, dtype=float)
    if not len(values) or t < 1 or t > len(values):
        return math.nan
    return float(np.interp(t, np.arange(1, len(values) + 1), values))


def at_budget(curve, fraction: float, epochs: int) -> float:
    """The curve at t = fraction x E: a fixed share of the update budget."""
    return value_at(curve, fraction * epochs)


def best_value(curve, higher_is_better: bool = True) -> tuple[float, int]:
    """The best value over the intervals and its interval t (1-based); (NaN, 0) for an empty curve."""
    values = np.asarray(curve, dtype=float)
    if not len(values) or not np.isfinite(values).any():
        return math.nan, 0
    i = int(np.nanargmax(values) if higher_is_better else np.nanargmin(values))
    return float(values[i]), i + 1
