"""The `make tables` settings (conf/tables.yaml composed), checked before any record is read: each
problem refused in one line naming the key and the fix."""

from __future__ import annotations

from omegaconf import DictConfig

from hardsamples.config_checks.values import is_choice
from hardsamples.errors import ConfigError

SOURCES = ("records", "wandb")  # source=: the run records, or their W&B mirror
PAPER_CONSISTENCY = ("auto", True, False)  # auto: beside runs of the paper's datasets


def check_tables_settings(cfg: DictConfig) -> None:
    if cfg.source not in SOURCES:
        raise ConfigError(f"source={cfg.source} is unknown: use records (the run records) or wandb (the W&B mirror)")
    if cfg.source == "records" and not cfg.runs:
        raise ConfigError("runs= is empty: expected a directory of run records, e.g. RUNS=results/runs")
    if cfg.convergence.rule not in cfg.convergence.rules:
        raise ConfigError(f"convergence.rule={cfg.convergence.rule} is not one of convergence.rules:"
                          f" {', '.join(cfg.convergence.rules)} (conf/tables.yaml)")
    if not is_choice(cfg.paper_consistency, PAPER_CONSISTENCY):
        raise ConfigError(f"paper_consistency={cfg.paper_consistency} is unknown: use auto (beside runs of the"
                          " paper's datasets), true or false")
