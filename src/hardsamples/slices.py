"""A study in slices: a sweep with a time budget, after which no new run starts.

`hydra.sweeper.budget_minutes=M` (the sweeper, hydra_plugins/hardsamples_launchers/sweeper.py, runs
every grid seed-major, so a slice adds whole seeds: complete pairs). From the sweep's start plus M
minutes, a job whose run is not over yet does not start it: it leaves `job.postponed.json` and the
summary counts it `postponed`. A run already training then either finishes (`at_budget=finish`,
the default) or, with `at_budget=stop`, stops after its next interval's checkpoint, recorded
`interrupted` in run.json and `stopped` in job.json. Running the same command again is the next
slice: finished runs are skipped, stopped ones resume from their checkpoint, postponed ones start.

The sweeper hands the deadline to every job in its config (hydra.job.env_set, as sweep/summary.py hands the
swept keys), so jobs on other processes or machines read it from their environment.
"""

from __future__ import annotations

import math
import os
import time

from hardsamples.errors import ConfigError, Terminated

DEADLINE_ENV = "HARDSAMPLES_SWEEP_DEADLINE"  # seconds since the epoch
AT_BUDGET_ENV = "HARDSAMPLES_SWEEP_AT_BUDGET"
AT_BUDGET = ("finish", "stop")
POSTPONED_NOTE = "job.postponed.json"


class BudgetSpent(Terminated):
    """A run stopped at its checkpoint because the sweep's time budget is spent (at_budget=stop)."""


def check_budget(budget_minutes, at_budget) -> None:
    """hydra.sweeper.budget_minutes (null, or minutes > 0) and at_budget, in one line each."""
    if budget_minutes is not None:
        try:
            minutes = float(budget_minutes)
        except (TypeError, ValueError):
            minutes = math.nan
        if isinstance(budget_minutes, bool) or not math.isfinite(minutes) or minutes <= 0:
            raise ConfigError(f"hydra.sweeper.budget_minutes={budget_minutes} is not a number of minutes > 0:"
                              " e.g. hydra.sweeper.budget_minutes=8, or null for no budget")
    if at_budget not in AT_BUDGET:
        raise ConfigError(f"hydra.sweeper.at_budget={at_budget} is unknown: use finish (running runs end) or stop"
                          " (they stop at their next checkpoint and resume in the next slice)")


def deadline_overrides(budget_minutes: float, at_budget: str, now: float | None = None) -> list[str]:
    """Hydra overrides that put the deadline into every job's environment (hydra.job.env_set)."""
    deadline = (time.time() if now is None else now) + 60 * float(budget_minutes)
    return [f"++hydra.job.env_set.{DEADLINE_ENV}='{deadline:.3f}'", f"++hydra.job.env_set.{AT_BUDGET_ENV}='{at_budget}'"]


def budget_spent() -> bool:
    """Whether this process runs a job of a sweep whose time budget is spent."""
    deadline = os.environ.get(DEADLINE_ENV)
    try:
        return deadline is not None and time.time() >= float(deadline)
    except ValueError:
        return False


def stop_if_budget_spent() -> None:
    """Between intervals, after the checkpoint: with at_budget=stop, end the run to resume it later."""
    if os.environ.get(AT_BUDGET_ENV) == "stop" and budget_spent():
        raise BudgetSpent("stopped at its checkpoint: the sweep's time budget (hydra.sweeper.budget_minutes) is"
                          " spent; the next slice (the same command again) resumes it")


def budget_line(counts: dict[str, int]) -> list[str]:
    """The summary's word on a slice cut short by its budget."""
    stopped, postponed = counts.get("stopped", 0), counts.get("postponed", 0)
    if not (stopped or postponed):
        return []
    return [f"  time budget spent: {stopped} run(s) stopped at a checkpoint, {postponed} not started; run the same"
            " command again for the next slice (finished runs are skipped, stopped ones resume)"]
