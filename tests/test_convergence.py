"""The convergence rules on curves whose answer is known."""

from __future__ import annotations

import math

import pytest
from omegaconf import OmegaConf

from hardsamples.convergence import convergence_epoch
from hardsamples.tables import CONF_DIR

DEFAULTS = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "tables.yaml").convergence.rules)


def step(epochs: int, at: int, high: float = 2.0, low: float = 0.01) -> list[float]:
    return [high if t < at else low for t in range(1, epochs + 1)]


@pytest.mark.parametrize("name", sorted(DEFAULTS))
@pytest.mark.parametrize("at", [2, 3, 7])
def test_every_configured_rule_finds_the_step(name, at):
    """One drop at interval `at`, flat before and after: every rule says e = at. The plateau rule gets
    a patience longer than the flat start (8 of 20 intervals), or it stops on that stall (tested below)."""
    params = {**DEFAULTS[name], **({"patience_fraction": 0.4} if DEFAULTS[name]["kind"] == "plateau" else {})}
    result = convergence_epoch(step(20, at), **params)
    assert result.epoch == at and result.converged


def test_relative_waits_for_the_curve_to_stay_near_its_floor():
    # 2.0, then 1.0 (half the decrease), then 0.02 from interval 6, 0.0 from interval 9
    losses = [2.0] * 3 + [1.0] * 2 + [0.02] * 3 + [0.0] * 4
    assert convergence_epoch(losses, "relative", tolerance=0.01).epoch == 6  # 0.02 <= 0.01 x 2.0
    assert convergence_epoch(losses, "relative", tolerance=0.005).epoch == 9
    assert convergence_epoch(losses, "relative", tolerance=0.6).epoch == 4
    # a late rise out of the band moves e past it: the loss must stay
    assert convergence_epoch(losses[:-1] + [0.5], "relative", tolerance=0.01).converged is False


def test_absolute_threshold_and_censoring():
    losses = [2.0, 1.0, 0.3, 0.1, 0.04, 0.03]
    assert convergence_epoch(losses, "absolute", threshold=0.05).epoch == 5
    never = convergence_epoch(losses, "absolute", threshold=0.01)
    assert never.epoch == len(losses) and not never.converged


def test_plateau_stops_at_the_first_stall_of_patience_intervals():
    losses = [2.0, 1.0, 1.0, 1.0, 0.5, 0.2] + [0.2] * 14  # E = 20
    # patience ceil(0.05 x 20) = 1: the stall at interval 2 is enough
    assert convergence_epoch(losses, "plateau", patience_fraction=0.05, min_improvement=0.01).epoch == 2
    # patience ceil(0.15 x 20) = 3: 2 -> 3, 4, 5 improves; the loss flattens for good from interval 6
    assert convergence_epoch(losses, "plateau", patience_fraction=0.15, min_improvement=0.01).epoch == 6
    # no full window left after a still-falling curve: censored at E
    falling = [1.0 / t for t in range(1, 11)]
    result = convergence_epoch(falling, "plateau", patience_fraction=0.5, min_improvement=0.01)
    assert result.epoch == 10 and not result.converged


def test_a_diverged_or_empty_curve_does_not_converge():
    assert convergence_epoch([2.0, math.nan], "relative", tolerance=0.01).converged is False
    assert convergence_epoch([], "absolute", threshold=0.05).converged is False


def test_unknown_rule_is_named():
    with pytest.raises(ValueError, match="relative, plateau, absolute"):
        convergence_epoch([1.0], "magic")
