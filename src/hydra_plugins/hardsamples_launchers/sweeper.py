"""Hydra's basic sweeper, seed-major and with a time budget (conf/config.yaml selects it).

Seed-major: the swept `seed` varies slowest, so every arm of seed 0 runs before any of seed 1 and a
sweep cut short leaves complete pairs (every delta against delta = 1.0 of the same seed). Within a
seed the grid keeps Hydra's order. With hydra.sweeper.budget_minutes each job gets the deadline in
its environment and no run starts after it (hardsamples.slices).
"""

from __future__ import annotations

import logging
import time

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from omegaconf import open_dict, read_write

from hardsamples import slices
from hardsamples.config_checks import refuse
from hardsamples.errors import ConfigError
from hydra_plugins.hardsamples_launchers import config  # noqa: F401  the sweeper's options

log = logging.getLogger(__name__)


class SlicedSweeper(BasicSweeper):
    def __init__(self, max_batch_size=None, params=None, budget_minutes=None, at_budget="finish") -> None:
        try:
            slices.check_budget(budget_minutes, at_budget)
        except ConfigError as err:
            refuse(str(err))
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.budget_minutes, self.at_budget = budget_minutes, at_budget

    @staticmethod
    def split_arguments(overrides, max_batch_size):
        """Hydra's product with `seed` moved first, so it varies slowest (a stable move: the other
        keys keep their order, and a seed given on the command line still wins over the grid's)."""
        seed_first = sorted(overrides, key=lambda override: override.key_or_group != "seed")
        return BasicSweeper.split_arguments(seed_first, max_batch_size)

    def sweep(self, arguments):
        if self.budget_minutes is not None:
            log.info("time budget %s min (at the budget, running runs %s): runs not started by then wait for the"
                     " next slice", self.budget_minutes, self.at_budget)
            with open_dict(self.config), read_write(self.config):
                self.config.hydra.overrides.hydra = [
                    *self.config.hydra.overrides.hydra,
                    *slices.deadline_overrides(self.budget_minutes, self.at_budget, time.time())]
        return super().sweep(arguments)
