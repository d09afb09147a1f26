"""One way to read conf/ outside a Hydra app: `make tables`, `make bench` and the analysis compose their
configs with Hydra's compose API, exactly as the training app composes conf/config.yaml.

Also what the two command lines share: key=value overrides checked against the YAML before Hydra
sees them (config_checks.command_line.check_overrides), Hydra's multi-line errors cut to one line, and
a --help written from the YAML itself: every option with its default and its comment.
"""

from __future__ import annotations

import contextlib
import functools
import textwrap
from collections.abc import Iterable
from pathlib import Path

import yaml
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hardsamples.errors import ConfigError, first_line
from hardsamples.layout import CONF_DIR

HELP_FLAGS = ("-h", "--help")


def compose(config_name: str, overrides: Iterable[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """conf/<config_name>.yaml composed by Hydra with the overrides (Hydra's own errors pass through)."""
    with own_hydra(), initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides),
                             return_hydra_config=return_hydra_config)


@contextlib.contextmanager
def own_hydra():
    """Inside a Hydra app (a training job naming its W&B group, a sweep's end-of-sweep callback) Hydra is
    initialised already and refuses a second initialisation: compose with a fresh instance, then put
    the app's back, as Hydra's own initialize() does when it nests."""
    if not GlobalHydra.instance().is_initialized():
        yield
        return
    saved = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        yield
    finally:
        restore_gh_from_backup(saved)


@functools.lru_cache(maxsize=None)
def written_defaults(config_name: str) -> dict:
    """The config as composed with no override, interpolations unresolved: which keys exist."""
    return OmegaConf.to_container(compose(config_name), resolve=False)


def wants_help(argv: list[str]) -> bool:
    return any(arg in HELP_FLAGS for arg in argv)


def without_help(argv: list[str]) -> list[str]:
    return [arg for arg in argv if arg not in HELP_FLAGS]


def compose_checked(config_name: str, argv: list[str], prog: str) -> DictConfig:
    """conf/<config_name>.yaml with the command line's key=value overrides; bad input is a ConfigError
    of one line naming the key and the fix (the caller prints it and exits 2)."""
    from hardsamples.config_checks.command_line import check_overrides  # which reads conf/ through this module

    check_overrides(config_name, argv, prog)
    try:
        return compose(config_name, argv)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"{first_line(err)}: {where_options_are(config_name, prog)}") from None


def where_options_are(config_name: str, prog: str) -> str:
    return f"the options are the keys of conf/{config_name}.yaml, listed by `{prog} --help`"


def override_text(value) -> str:
    """A value as it is written on the command line (key=value)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple, ListConfig)):
        return "[" + ",".join(override_text(v) for v in value) + "]"
    return str(value)


def help_text(usage: str, config_name: str, cfg: DictConfig, hidden: tuple[str, ...] = ()) -> str:
    """usage, then every option of cfg (leaf keys, dotted) with its value and its YAML comment."""
    column = 34  # where the comments start
    comments = yaml_comments(CONF_DIR / f"{config_name}.yaml")
    lines = [usage.strip(), "", f"options (key=value; defaults from conf/{config_name}.yaml):"]
    for key, value in leaves(OmegaConf.to_container(cfg, resolve=True)):
        if key.startswith(hidden):
            continue
        option = f"  {key}={override_text(value)}"
        comment = textwrap.wrap(comments.get(key, ""), 100 - column)
        if comment and len(option) < column:
            lines.append(option.ljust(column) + comment.pop(0))
        else:
            lines.append(option)
        lines += [" " * column + line for line in comment]
    return "\n".join(lines)


def leaves(node, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, value) of every option that is not a group of options."""
    if not isinstance(node, dict):
        return [(prefix, node)]
    return [leaf for key, value in node.items() for leaf in leaves(value, f"{prefix}.{key}" if prefix else key)]


def yaml_comments(path: Path) -> dict[str, str]:
    """Each dotted key's comment in a YAML file: the one on its line, or else the comment lines just
    above it. PyYAML drops comments, but its node marks say where each key and value end."""
    text = path.read_text()
    lines = text.splitlines()
    comments: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            row = key_node.start_mark.line
            # the rest of the key's line after its value (a block value starts on the next line)
            end = value_node.end_mark.column if value_node.end_mark.line == row else key_node.end_mark.column
            trailing = lines[row][end:].partition("#")[2].strip()
            above = []
            while row - len(above) - 1 >= 0 and lines[row - len(above) - 1].strip().startswith("#"):
                above.insert(0, lines[row - len(above) - 1].strip().lstrip("#").strip())
            comments[key] = trailing or " ".join(above)
            walk(value_node, key + ".")

    walk(yaml.compose(text), "")
    return comments
