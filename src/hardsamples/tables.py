"""`make tables`: run records (or W&B) to the paper's Tables 1-6, figures and the consistency report.

    python -m hardsamples.tables                                  # results/runs -> results/tables
    python -m hardsamples.tables runs=results/runs/demo out=results/demo
    python -m hardsamples.tables convergence.rule=plateau         # another rule for e
    python -m hardsamples.tables source=wandb wandb.entity=me wandb.group=table3

Options: conf/tables.yaml, composed by Hydra like the training app. The work is in analysis/tables.py.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from hardsamples.analysis.tables import run
from hardsamples.errors import ConfigError
from hardsamples.layout import CONF_DIR


def compose(overrides: list[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="tables", overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    argv = sys.argv[1:] if argv is None else argv
    try:
        return run(compose(argv))
    except (HydraException, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: {first} (options: conf/tables.yaml)", file=sys.stderr)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
