"""Checks on the command line before Hydra composes it, so a mistyped choice costs one line."""

from __future__ import annotations

import sys
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def group_choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def check_group_choices(overrides: list[str]) -> None:
    """`dataset=foo` with no conf/dataset/foo.yaml: name the choices and stop with exit code 2."""
    for override in overrides:
        if "=" not in override or override.startswith(("-", "+", "~", "hydra")):
            continue
        group, value = override.split("=", 1)
        if "." in group or not (CONF_DIR / group).is_dir() or value.startswith(("choice(", "glob(", "range(")):
            continue
        for choice in value.split(","):
            if choice not in group_choices(group):
                hint = " or any timm model with model.name=<timm name>" if group == "model" else ""
                print(f"error: unknown {group} '{choice}': choose one of {', '.join(group_choices(group))}{hint}",
                      file=sys.stderr)
                raise SystemExit(2)
