"""The convergence epoch e of one run: "the epoch in which the training loss converges".

The paper gives no rule (its authors read W&B curves), so the study states its own and shows how the
conclusions move under others. Each rule reads one run's train-loss curve L_1..L_E (one value per
interval t = updates / N, the x axis every delta shares) and returns the interval t, 1-based, as the
paper's e is. The parameters live in conf/tables.yaml under `convergence`.

  relative  (the default) the first interval from which the loss stays within `tolerance` of the
            run's total decrease above its best value: L_t - L_min <= tolerance x (L_1 - L_min) for
            every later interval too. Scale-free (10 or 100 classes, any model), defined for every
            finished run, and it measures how fast the curve approaches its own floor, which is what
            Delta-e compares between deltas.
  plateau   early stopping's rule: the first interval t whose best-so-far loss is not improved by
            more than `min_improvement` x (L_1 - L_min) within the next `patience` intervals
            (patience = ceil(patience_fraction x E), at least 1). Can fire on an early stall.
  absolute  the first interval from which the loss stays at or below `threshold` (nats). Easy to
            read, but one threshold cannot suit every dataset: a run that never gets there is
            censored.

A rule that does not fire within the run returns e = E (the last interval) with converged=False:
the tables count such censored seeds and mark them, since E is then only a lower bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Convergence:
    epoch: int  # the interval t (1-based); E when the rule did not fire
    converged: bool


def _first_from_which_all(ok: np.ndarray) -> int | None:
    """0-based index of the first position from which `ok` holds to the end, or None."""
    if len(ok) == 0 or not ok[-1]:
        return None
    bad = np.flatnonzero(~ok)
    return 0 if len(bad) == 0 else int(bad[-1]) + 1


def relative(losses: np.ndarray, tolerance: float) -> Convergence:
    total = losses[0] - losses.min()
    index = _first_from_which_all(losses - losses.min() <= tolerance * total)
    return _result(index, len(losses))


def plateau(losses: np.ndarray, patience_fraction: float, min_improvement: float) -> Convergence:
    patience = max(1, math.ceil(patience_fraction * len(losses)))
    margin = min_improvement * (losses[0] - losses.min())
    best_so_far = np.minimum.accumulate(losses)
    for i in range(len(losses) - patience):
        if best_so_far[i] - losses[i + 1: i + 1 + patience].min() <= margin:
            return Convergence(i + 1, True)
    return Convergence(len(losses), False)


def absolute(losses: np.ndarray, threshold: float) -> Convergence:
    return _result(_first_from_which_all(losses <= threshold), len(losses))


def _result(index: int | None, length: int) -> Convergence:
    return Convergence(length, False) if index is None else Convergence(index + 1, True)


RULES = {"relative": relative, "plateau": plateau, "absolute": absolute}


def convergence_epoch(train_loss, kind: str, **params) -> Convergence:
    """e of one run's train-loss curve (interval 1 first) under rule `kind` with its parameters."""
    if kind not in RULES:
        raise ValueError(f"convergence rule kind '{kind}' is unknown: use one of {', '.join(RULES)}")
    losses = np.asarray(train_loss, dtype=float)
    if len(losses) == 0 or not np.isfinite(losses).all():
        return Convergence(len(losses), False)
    return RULES[kind](losses, **params)
