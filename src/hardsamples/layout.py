"""Where the package keeps what it reads: the one place that knows the layout.

The configs live at the top of a checkout (conf/, with the grids in sweeps/) and reach the package
through links: src/hardsamples/conf -> ../../conf and conf/experiment -> ../sweeps. The wheel copies
the linked files, so an installed `hardsamples-train` finds them beside its code from any directory,
and a checkout and an install read them through the same path. Records and tables are written relative
to the working directory (results/ by default, conf/config.yaml's hydra.run.dir).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

PACKAGE_DIR = Path(__file__).resolve().parent
CONF_DIR = PACKAGE_DIR / "conf"  # Hydra's primary config directory: config.yaml, tables.yaml, bench.yaml
PAPER_NUMBERS_DIR = PACKAGE_DIR / "analysis" / "reference"  # the paper's tables, transcribed


def group_choices(group: str) -> list[str]:
    """The options of a config group: conf/<group>/*.yaml by name."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def method_tag(name: str, refresh) -> str:
    """`${method_tag:${.name},${.refresh}}` (conf/method/hard_batches.yaml): the method part of a run's
    name. Registered here because every reader of conf/ imports this module."""
    return f"{name}_refresh" if refresh is True else str(name)


OmegaConf.register_new_resolver("method_tag", method_tag, replace=True)
