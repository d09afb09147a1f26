"""The options of this package's launchers and sweeper that Hydra's own lack, as structured configs in
Hydra's ConfigStore (conf/launcher/joblib.yaml selects `hydra/launcher: hardsamples_joblib`,
conf/config.yaml `hydra/sweeper: hardsamples_basic`).

Hydra imports every module of hydra_plugins when it looks for plugins, outside sys.modules; a
dataclass with postponed annotations cannot be made there, so this module has none.
"""

from dataclasses import dataclass
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf


@dataclass
class SharedGpuJoblibConf(JobLibLauncherConf):
    """Hydra's joblib launcher options and jobs_per_gpu: how many jobs share one GPU, each pinned to it
    (hardsamples.sweep.gpus.claim_gpu). Small models leave a GPU mostly idle, so k jobs on it finish up to k
    runs in the time of one, until the GPU is busy."""

    _target_: str = "hydra_plugins.hardsamples_launchers.launchers.JoblibLauncher"
    jobs_per_gpu: Any = 1  # untyped here: the launcher refuses a bad value in one line, not Hydra in six


ConfigStore.instance().store(group="hydra/launcher", name="hardsamples_joblib", node=SharedGpuJoblibConf,
                             provider="hardsamples")


@dataclass
class SlicedSweeperConf(BasicSweeperConf):
    """Hydra's basic sweeper (a cartesian product of the swept values), its jobs ordered seed-major, with
    an optional time budget after which no new run starts (hardsamples.slices)."""

    _target_: str = "hydra_plugins.hardsamples_launchers.sweeper.SlicedSweeper"
    # Untyped here: the sweeper refuses a bad value in one line (slices.check_budget), not Hydra in six.
    budget_minutes: Any = None  # null: no budget, every run of the grid
    at_budget: Any = "finish"  # finish: runs going at the budget end; stop: they stop at their next checkpoint


ConfigStore.instance().store(group="hydra/sweeper", name="hardsamples_basic", node=SlicedSweeperConf,
                             provider="hardsamples")
