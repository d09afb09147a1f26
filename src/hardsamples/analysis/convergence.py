"""The convergence epoch e of one run: "the epoch in which the training loss converges".

The paper gives no rule (its authors read W&B curves), so the study states its own and shows how the
conclusions move under others. Every rule reads one run's train-loss curve L_1..L_E (one value per
interval t = updates / N, the x axis every delta shares) and returns the interval t, 1-based, as the
paper's e is, or says the run is censored. The parameters live in conf/tables.yaml (`convergence`).

Every rule works on the same prepared curve and passes the same guards first:

  smoothing   S = running median of `smooth` intervals (ends padded with their own value). A median
              leaves monotone curves and steps exactly as they are and removes a one-interval blip,
              so one +0.05 spike at t = 70 cannot move e from 38 to 71.
  noise       sigma = the curve's interval-to-interval noise, estimated where it is near its floor
              (the tail from the first t with S_t - min S < half the total decrease): a robust
              standard deviation (scaled MAD) of the second differences L_(t+1) - 2 L_t + L_(t-1),
              divided by sqrt(6) (their variance under white noise). Second differences cancel a
              steady trend, and the tail leaves out the early, strongly curved descent, so a smooth
              curve still on its way down is not mistaken for noise. Every tolerance below is at
              least noise_band x sigma: a change smaller than the curve's own noise cannot be told
              from a plateau. A noiseless curve (sigma = 0) is judged by the tolerances alone.
  too noisy   noise_band x sigma > max_noise x (S_1 - min S): the swings are a large share of the
              whole decrease, so no plateau can be located. Censored ("too noisy").
  stuck       total decrease S_1 - min S < min_decrease x S_1: the run barely learned after its first
              interval. Censored ("stuck"), never e = 1.
  falling     with the last w = max(3, ceil(hold_fraction x E)) intervals as the hold window:
              S_(E-w+1) - S_E > max(falling_tolerance x (S_1 - min S), noise_band x sigma), i.e. the
              loss still fell within the window by more than that share of its whole decrease and
              more than its noise. Censored ("still falling"): the run has no floor yet to converge to.
  confirmed   the rule's e must leave at least w intervals in which its criterion is seen to hold
              (e <= E - w + 1); a criterion first met in the last w intervals is censored ("not
              confirmed"), since it cannot be told from a curve still on its way down.

Then the rule, on S:

  relative  (the default) the first t from which the loss stays within `tolerance` of the run's total
            decrease above its floor: S_u - min S <= max(tolerance x (S_1 - min S), noise_band x sigma)
            for every u >= t.
  plateau   early stopping's rule: the first t whose best-so-far loss is not improved by more than
            max(`min_improvement` x (S_1 - min S), noise_band x sigma) within the next `patience` intervals (patience =
            ceil(patience_fraction x E), at least 1). The window must be complete (t + patience <= E).
            Can fire on an early stall that the curve later leaves.
  absolute  the first t from which S_u <= `threshold` (nats) for every u >= t.

A censored run has `epoch` = E (a lower bound only) and converged = False with its reason: the
tables count censored runs apart and never average E in as if it were an e.

The outcome measure beside e (`epochs_to_reach`): the first interval at which one run's smoothed
curve reaches a target, here the delta = 1 run's best train loss or test top-1 of the same seed;
None (censored) when it never does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter
from scipy.stats import median_abs_deviation

GUARDS = {"smooth": 3, "min_decrease": 0.1, "hold_fraction": 0.1, "falling_tolerance": 0.01, "noise_band": 2.0,
          "max_noise": 0.25}


@dataclass(frozen=True)
class Convergence:
    epoch: int  # the interval t (1-based); E when censored (then only a lower bound)
    converged: bool
    reason: str = ""  # why censored: stuck, too noisy, still falling, not confirmed, never met, diverged, empty


def smoothed(curve, smooth: int = 3) -> np.ndarray:
    """Running median of `smooth` (odd) intervals, ends padded with their own value."""
    values = np.asarray(curve, dtype=float)
    return median_filter(values, size=smooth, mode="nearest") if smooth > 1 and len(values) else values


def noise_level(curve, smooth: int = GUARDS["smooth"]) -> float:
    """sigma: scaled MAD of the second differences over the curve's tail, / sqrt(6); 0 with < 4 tail points."""
    values = np.asarray(curve, dtype=float)
    s = smoothed(values, smooth)
    near_floor = np.flatnonzero(s - s.min() < 0.5 * (s[0] - s.min()))
    tail = values[near_floor[0]:] if len(near_floor) else values[:0]
    if len(tail) < 4:
        return 0.0
    return float(median_abs_deviation(np.diff(tail, 2), scale="normal")) / math.sqrt(6)


def hold_window(epochs: int, hold_fraction: float) -> int:
    return max(3, math.ceil(hold_fraction * epochs))


def _first_from_which_all(ok: np.ndarray) -> int | None:
    """0-based index of the first position from which `ok` holds to the end, or None."""
    if len(ok) == 0 or not ok[-1]:
        return None
    bad = np.flatnonzero(~ok)
    return 0 if len(bad) == 0 else int(bad[-1]) + 1


def relative(s: np.ndarray, tolerance: float, noise: float = 0.0) -> int | None:
    return _first_from_which_all(s - s.min() <= max(tolerance * (s[0] - s.min()), noise))


def plateau(s: np.ndarray, patience_fraction: float, min_improvement: float, noise: float = 0.0) -> int | None:
    patience = max(1, math.ceil(patience_fraction * len(s)))
    margin = max(min_improvement * (s[0] - s.min()), noise)
    best_so_far = np.minimum.accumulate(s)
    for i in range(len(s) - patience):  # complete windows only: i + patience <= E - 1
        if best_so_far[i] - s[i + 1: i + 1 + patience].min() <= margin:
            return i
    return None


def absolute(s: np.ndarray, threshold: float, noise: float = 0.0) -> int | None:
    """A fixed threshold in nats: the curve's noise does not move it."""
    return _first_from_which_all(s <= threshold)


RULES = {"relative": relative, "plateau": plateau, "absolute": absolute}


def guard(s: np.ndarray, min_decrease: float, hold_fraction: float, falling_tolerance: float,
          noise: float = 0.0, max_noise: float = GUARDS["max_noise"]) -> str:
    """Why no rule may call this smoothed curve converged ('' when none applies); noise = noise_band x sigma."""
    total = s[0] - s.min()
    if total < min_decrease * abs(s[0]):
        return "stuck"
    if noise > max_noise * total:
        return "too noisy"
    w = hold_window(len(s), hold_fraction)
    if len(s) >= w and s[-w] - s[-1] > max(falling_tolerance * total, noise):
        return "still falling"
    return ""


def convergence_epoch(train_loss, kind: str, smooth: int = GUARDS["smooth"],
                      min_decrease: float = GUARDS["min_decrease"], hold_fraction: float = GUARDS["hold_fraction"],
                      falling_tolerance: float = GUARDS["falling_tolerance"],
                      noise_band: float = GUARDS["noise_band"], max_noise: float = GUARDS["max_noise"],
                      **params) -> Convergence:
    """e of one run's train-loss curve (interval 1 first) under rule `kind`, after the guards above."""
    if kind not in RULES:
        raise ValueError(f"convergence rule kind '{kind}' is unknown: use one of {', '.join(RULES)}")
    losses = np.asarray(train_loss, dtype=float)
    if len(losses) == 0:
        return Convergence(0, False, "empty")
    if not np.isfinite(losses).all():
        return Convergence(len(losses), False, "diverged")
    s = smoothed(losses, smooth)
    noise = noise_band * noise_level(losses, smooth)
    reason = guard(s, min_decrease, hold_fraction, falling_tolerance, noise, max_noise)
    if reason:
        return Convergence(len(s), False, reason)
    index = RULES[kind](s, noise=noise, **params)
    if index is None:
        return Convergence(len(s), False, "never met")
    if index + hold_window(len(s), hold_fraction) > len(s):
        return Convergence(len(s), False, "not confirmed")
    return Convergence(index + 1, True)


def epochs_to_reach(curve, target: float, higher_is_better: bool, smooth: int = GUARDS["smooth"]) -> int | None:
    """First interval t (1-based) at which the smoothed curve reaches `target`; None if it never does."""
    s = smoothed(curve, smooth)
    if not len(s) or not np.isfinite(target):
        return None
    hit = np.flatnonzero(s >= target if higher_is_better else s <= target)
    return int(hit[0]) + 1 if len(hit) else None


def reach_target(curve, higher_is_better: bool, target: str = "best", smooth: int = GUARDS["smooth"]) -> float:
    """The delta = 1 run's target on its smoothed curve: its best value, or its final one."""
    s = smoothed(curve, smooth)
    if not len(s) or not np.isfinite(s).all():
        return math.nan
    if target == "final":
        return float(s[-1])
    return float(s.max() if higher_is_better else s.min())
