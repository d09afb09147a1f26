"""Checks on the command line before Hydra composes it, so a mistyped choice costs one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from hardsamples.layout import CONF_DIR, group_choices



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


def flat_keys(node, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}{key}"
            keys.append(path)
            keys += flat_keys(value, path + ".")
    return keys


def refuse(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)  # passes through Hydra's callback and error handlers: nothing has been written


def added_key_error(config) -> str | None:
    """`+detla=0.5` (what Hydra suggests for a typo) would add a key nothing reads: the run would train
    delta = 1.0 and report finished. Every `+` outside hydra.* is refused, naming the closest known key."""
    import difflib

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    lines = list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    added = [o for o in OverridesParser.create().parse_overrides(lines)
             if o.is_add() and not o.key_or_group.startswith("hydra")]
    if not added:
        return None
    tree = {k: OmegaConf.to_container(config[k], resolve=False) if OmegaConf.is_config(config[k]) else None
            for k in config if k != "hydra"}
    names = {o.key_or_group for o in added}
    known = [k for k in flat_keys(tree) if k not in names]
    first = added[0]
    key, value = first.key_or_group, first.input_line.split("=", 1)[-1]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    fix = (f"did you mean {close[0]}? write {close[0]}={value}" if close
           else "no run reads it; the keys are in conf/config.yaml and its groups")
    return f"unknown key {key} (added with {first.input_line}): {fix}"


class ConfigCheck(Callback):
    """Hydra callback (conf/config.yaml): checks made before Hydra writes anything into the output
    directory, so a bad command line costs one line and leaves no directory behind."""

    def on_run_start(self, config, **kwargs) -> None:
        from hardsamples.errors import ConfigError
        from hardsamples.validation import check_settings

        if (error := added_key_error(config)) is not None:
            refuse(error)
        run_dir = Path(str(config.hydra.run.dir))
        if run_dir.exists() and not run_dir.is_dir():
            refuse(f"the run directory {run_dir} is a file: delete or move that file, or pass another run_name= /"
                   " sweep_name=")
        try:
            check_settings(config)
        except ConfigError as err:
            refuse(str(err))
        if run_dir.is_dir() and not os.access(run_dir, os.W_OK):
            write_nothing_into(config)


    def on_multirun_start(self, config, **kwargs) -> None:
        if (error := added_key_error(config)) is not None:
            refuse(error)
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if sweep_dir.exists() and not sweep_dir.is_dir():
            refuse(f"the sweep directory {sweep_dir} is a file: delete or move that file, or pass another sweep_name=")


def write_nothing_into(config) -> None:
    """A read-only run directory (e.g. results shared read-only): Hydra would write .hydra/ and the log
    file into it and fail before the run could even skip a finished run. Both are turned off here; the
    run then skips a finished run or refuses in one line (train.run)."""
    from omegaconf import open_dict, read_write

    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.output_subdir = None
        logging = config.hydra.job_logging
        if logging is not None and "handlers" in logging and "file" in logging.handlers:
            del logging.handlers["file"]
            if "root" in logging and "handlers" in logging.root:
                logging.root.handlers = [h for h in logging.root.handlers if h != "file"]
