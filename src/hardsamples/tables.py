"""`make tables`: run records (or W&B) to the paper's Tables 1-6, figures and the consistency report.

usage: python -m hardsamples.tables [key=value ...]     (or hardsamples-tables, or make tables ARGS="...")

    python -m hardsamples.tables                                  # results/runs -> results/tables
    python -m hardsamples.tables runs=results/runs/demo out=results/demo
    python -m hardsamples.tables convergence.rule=plateau         # another rule for e
    python -m hardsamples.tables source=wandb wandb.entity=me wandb.group=table3

Options: conf/tables.yaml, composed by Hydra like the training app. The work is in analysis/report.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from hardsamples import cli
from hardsamples.analysis.report import run
from hardsamples.config_checks.tables import check_tables_settings
from hardsamples.errors import ConfigError, first_line

PROG = "python -m hardsamples.tables"


def compose(overrides: list[str]) -> DictConfig:
    """conf/tables.yaml with key=value overrides, checked (config_checks.tables); a bad one is a one-line
    ConfigError."""
    cfg = cli.compose_checked("tables", overrides, PROG)
    check_tables_settings(cfg)
    return cfg


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        cfg = compose(cli.without_help(argv))
        if cli.wants_help(argv):
            print(cli.help_text(__doc__, "tables", cfg))
            return 0
        return run(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
    except OmegaConfBaseException as err:  # a value of the wrong shape, met while the tables are made
        print(f"error: {first_line(err)}: {cli.where_options_are('tables', PROG)}", file=sys.stderr)
    except OSError as err:  # out= a file, a read-only folder, a full disk
        where = err.filename or "the output folder"
        problem = "it is a file" if Path(str(where)).is_file() else err.strerror or type(err).__name__
        print(f"error: cannot write {where} ({problem}): pass out=<a folder you can write> (or free space there)",
              file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
