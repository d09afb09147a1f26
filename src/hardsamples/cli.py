"""One way to read conf/ outside a Hydra app: `make tables`, `make bench` and the analysis compose their
configs with Hydra's compose API, exactly as the training app composes conf/config.yaml.

Also what the two command lines share: key=value overrides checked against the YAML before Hydra
sees them (an unknown key, a `+`, a sweep or a group of options replaced by one value is refused in
one line that names the key and the fix), Hydra's multi-line errors cut to one line, and a --help
written from the YAML itself: every option with its default and its comment.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import textwrap
from collections.abc import Iterable
from pathlib import Path

import yaml
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hardsamples.errors import ConfigError
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
    check_overrides(config_name, argv, prog)
    try:
        return compose(config_name, argv)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"{one_line(err)}: {where_options_are(config_name, prog)}") from None


def check_overrides(config_name: str, argv: list[str], prog: str) -> None:
    """Every override sets one existing option to one value: Hydra would add a `+key` nobody reads, run
    a sweep `a,b` as its first value, or hand `wandb=3` on where a group of options is expected."""
    parser = OverridesParser.create()
    options = written_defaults(config_name)
    for text in argv:
        try:
            override = parser.parse_override(text)
        except HydraException as err:  # the parser's syntax errors
            raise ConfigError(f"cannot read '{text}' ({one_line(err)}): write key=value with a key of "
                              f"conf/{config_name}.yaml ({prog} --help lists them)") from None
        key = override.key_or_group
        current = lookup(options, key, config_name, prog)
        if override.is_add() or override.is_force_add() or override.is_delete():
            sign = text[:len(text) - len(text.lstrip("+~"))]
            raise ConfigError(f"{text}: {prog} neither adds nor deletes options: write {key}=<value> without "
                              f"the '{sign}'")
        if override.is_sweep_override():
            raise ConfigError(f"{text} is a sweep: {prog} takes one value per key, e.g. "
                              f"{key}={text.split('=', 1)[1].split(',')[0]}")
        if isinstance(current, dict) and not isinstance(override.value(), dict):
            raise ConfigError(replaced_options_error(text, key, current))


def replaced_options_error(text: str, key: str, options: dict) -> str:
    """`optimizer=adam` where optimizer is a group of options (lr, momentum, ...), not a choice."""
    first = next(iter(options), "key")
    return (f"{text} replaces the group of options {key} ({', '.join(options)}) with one value: "
            f"set them one by one, e.g. {key}.{first}={override_text(options.get(first))}")


def lookup(options: dict, key: str, config_name: str, prog: str):
    """The written value at a dotted key, or a ConfigError naming the closest known key."""
    node, parts = options, key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            parent = ".".join(parts[:depth])
            siblings = list(node) if isinstance(node, dict) else []
            close = difflib.get_close_matches(part, siblings, n=1, cutoff=0.6)
            hint = f"did you mean {'.'.join([*parts[:depth], close[0]])}? " if close else ""
            scope = f"{parent} has {', '.join(siblings)}; " if parent and siblings else ""
            raise ConfigError(f"unknown option '{key}': {hint}{scope}{where_options_are(config_name, prog)}")
        node = node[part]
    return node


def where_options_are(config_name: str, prog: str) -> str:
    return f"the options are the keys of conf/{config_name}.yaml, listed by `{prog} --help`"


def one_line(err: Exception) -> str:
    """The first line of a Hydra or OmegaConf message (the rest is Hydra's advice or OmegaConf's
    full_key / object_type lines)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__).rstrip(".")


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
