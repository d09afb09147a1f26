"""The command line, checked before Hydra composes it, so a mistyped choice or key costs one line.

Hydra's own answer to `detla=0.5` is several lines and exit code 1; to `dataset=foo` a list of
search paths. The training command line is checked first (check_command_line, from train.main);
`make tables` and `make bench` check theirs against their YAML (check_overrides, from
cli.compose_checked). Each refusal is one line and exit code 2, naming the closest known key for a
misspelt one. A `+key` Hydra has already added is refused from its callback (added_key_error).
"""

from __future__ import annotations

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hardsamples.cli import compose, override_text, where_options_are, written_defaults
from hardsamples.config_checks import refuse
from hardsamples.config_checks.keys import closest, flat_keys, has_key, under_target, user_callable_key, value_at
from hardsamples.errors import ConfigError, first_line
from hardsamples.layout import CONF_DIR, group_choices
from hardsamples.record_files import recorded_config


# Hydra's flags that take a value (the value is no override); with any of them the command line is left to
# Hydra after the checks of choices and keys.
FLAGS_WITH_VALUES = ("-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name", "-cd",
                     "--config-dir", "--info", "-sc", "--shell-completion", "--experimental-rerun")
MULTIRUN_FLAGS = ("-m", "--multirun")
QUOTING = ("quote a value that holds ~ = , : [ ] { } ( ) spaces or non-ASCII characters, the shell's quotes around"
           " Hydra's: \"run_name='a=b'\"")


def multirun_flag_first(argv: list[str]) -> list[str]:
    """The command line with -m / --multirun moved before the overrides: Hydra's argument parser takes
    the overrides as one run of positional words, so `epochs=2 -m seed=0,1` would end in argparse's
    "unrecognized arguments: seed=0,1"; the flag means the same wherever it is typed."""
    flags = [arg for arg in argv if arg in MULTIRUN_FLAGS]
    return flags + [arg for arg in argv if arg not in MULTIRUN_FLAGS]


def check_command_line(argv: list[str]) -> None:
    """The training command line, before Hydra sees it: every override readable, known choices and keys, a
    sweep only in a multirun, no group added or deleted, and the whole of it composing, Hydra's own keys
    included. Each refusal is one line and exit code 2 (Hydra's answer is a block of lines and exit 1)."""
    if any(arg in ("-h", "--help", "--hydra-help", "--version") for arg in argv):
        return
    flags = hydra_flags()
    if unknown := [arg for arg in argv if arg.startswith("-") and arg.split("=", 1)[0] not in flags]:
        refuse(f"unknown option {unknown[0]}: Hydra's are {', '.join(sorted(f for f in flags if f.startswith('--')))};"
               " everything else is key=value (python -m hardsamples.train --help lists the keys)")
    overrides = [arg for arg in argv if not arg.startswith("-")]
    if any(arg.split("=", 1)[0] in FLAGS_WITH_VALUES for arg in argv):  # another config, --cfg, --info, ...
        check_group_choices(argv)
        check_override_keys(argv)
        return
    parsed = [parse_one(arg) for arg in overrides]
    check_group_choices(overrides)
    check_override_keys(overrides)
    check_additions_and_deletions(parsed)
    check_composes(parsed, multirun=any(arg in MULTIRUN_FLAGS for arg in argv))


def hydra_flags() -> set[str]:
    """The options Hydra's own argument parser knows (-m, --multirun, --cfg, ...)."""
    from hydra._internal.utils import get_args_parser

    return {flag for action in get_args_parser()._actions for flag in action.option_strings}


def parse_one(arg: str):
    """One override as Hydra's parser reads it, or a one-line refusal naming how to write it."""
    try:
        return OverridesParser.create().parse_override(arg)
    except HydraException as err:
        reason = next((line.strip() for line in str(err).splitlines()
                       if line.strip() and not line.startswith(("Error parsing", "See "))), "a syntax error")
        if "=" not in arg:
            refuse(f"'{arg}' is not key=value: write e.g. {arg}=<value> (python -m hardsamples.train --help lists"
                   " the options)")
        key, value = arg.split("=", 1)
        if value.startswith("="):
            refuse(f"cannot read '{arg}' (two '='): write {key}={value.lstrip('=')}")
        refuse(f"cannot read '{arg}' (Hydra's parser: {reason}): {QUOTING}")


def check_additions_and_deletions(parsed) -> None:
    """`+experiment=demo` adds a group every run already has; `~model` or `~delta` deletes what every run
    reads. Deleting an argument of a user's class (`~optimizer.momentum` beside optimizer._target_) is fine."""
    targets = {o.key_or_group.rsplit(".", 1)[0] + "." for o in parsed if o.key_or_group.endswith("._target_")}
    for override in parsed:
        key = override.key_or_group
        if key.startswith("hydra") or not (override.is_add() or override.is_delete()):
            continue
        if override.is_add() and is_group(key):
            refuse(f"{override.input_line} adds the group {key}, which every run already has: write"
                   f" {override.input_line.lstrip('+')} without the '+'")
        if override.is_delete() and not key.startswith(tuple(targets)) and not under_target(defaults_tree(), key):
            refuse(f"{override.input_line} deletes {key}, which a run reads: set it instead, e.g. {key}=<value>"
                   " (python -m hardsamples.train --help lists the options)")


def defaults_tree() -> dict:
    return written_defaults("config")


def check_composes(parsed, multirun: bool) -> None:
    """The command line composed as Hydra will compose it (sweeps left out, every other override in, Hydra's
    config too): what is left of Hydra's errors (a misspelt hydra.* key, a value of the wrong type) is
    refused in one line; and a sweep is refused outside a multirun (Hydra: "Ambiguous value")."""
    single = [o.input_line for o in parsed if not o.is_sweep_override()]
    try:
        config = compose("config", single, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        added = next((o for o in parsed if o.is_add() and f"'{o.key_or_group}'" in str(err)), None)
        if added is not None and "already" in str(err):  # +seed=1: Hydra adds only what is not there
            refuse(f"{added.input_line} adds {added.key_or_group}, which the config already has: write"
                   f" {added.input_line.lstrip('+')} without the '+'")
        refuse(f"{first_line(err)}: {hydra_key_fix(parsed, single)}")
        return
    sweeps = [o for o in parsed if o.is_sweep_override()]
    if sweeps and not multirun and str(config.hydra.mode) != "RunMode.MULTIRUN":
        line = sweeps[0].input_line
        key, value = line.split("=", 1)
        refuse(f"{line} is a sweep (several values) in a single run: add -m to run one job per value, or quote it"
               f" if it is one value: \"{key}='{value}'\"")


def hydra_key_fix(parsed, single: list[str]) -> str:
    """The fix for a command line Hydra cannot compose: the closest key for a misspelt hydra.* key."""
    hydra_keys = [o for o in parsed if o.key_or_group.startswith("hydra.") and not o.is_add() and not o.is_delete()
                  and not o.is_force_add()]
    rest = [line for line in single if not line.lstrip("+~").startswith("hydra.")]
    try:
        tree = {"hydra": OmegaConf.to_container(compose("config", rest, return_hydra_config=True).hydra,
                                                resolve=False)}
    except Exception:  # noqa: BLE001 - the fault is elsewhere: no better hint than Hydra's own line
        return "check the command line (python -m hardsamples.train --help lists the options)"
    for override in hydra_keys:
        if not has_key(tree, override.key_or_group):
            close = closest(override.key_or_group, flat_keys(tree))
            return (f"did you mean {close}?" if close else
                    f"Hydra has no key {override.key_or_group} (python -m hardsamples.train --hydra-help)")
    return "check the command line (python -m hardsamples.train --help lists the options)"


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
                refuse(f"unknown {group} '{choice}': choose one of {', '.join(group_choices(group))}{hint}")


def check_override_keys(overrides: list[str]) -> None:
    """`detla=0.5` or `++detla=0.5` (a key no config has): one line naming the closest key, exit 2."""
    if (error := unknown_key_error(overrides)) is not None:
        refuse(error)


def unknown_key_error(overrides: list[str]) -> str | None:
    lines = [o for o in overrides if "=" in o and not o.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except Exception:  # noqa: BLE001 - a syntax error: Hydra names it itself
        return None
    targets = {o.key_or_group.rsplit(".", 1)[0] + "." for o in parsed if o.key_or_group.endswith("._target_")}
    checked = [o for o in parsed if not o.key_or_group.startswith("hydra") and not o.is_delete() and not o.is_add()
               and not is_group(o.key_or_group) and not o.key_or_group.endswith("._target_")
               and not (o.is_force_add() and o.key_or_group.startswith(tuple(targets)))]  # ++<arg> of a user's class
    if not checked:
        return None
    configs = compositions([o for o in parsed if is_group(o.key_or_group) and not o.is_delete()])
    for override in checked:
        key = override.key_or_group
        if not any(has_key(config, key) or under_target(config, key) for config in configs):
            close = closest(key, sorted({k for config in configs for k in flat_keys(config)}))
            fix = f"did you mean {close}?" if close else "no config has it; python -m hardsamples.train --help lists them"
            return f"unknown key {key} (in {override.input_line}): {fix}"
        options = next((value_at(config, key) for config in configs if has_key(config, key)), None)
        if isinstance(options, dict) and not isinstance(override.value(), dict) and not override.is_sweep_override():
            other = " (another optimizer: ++optimizer._target_=<its class>)" if key == "optimizer" else ""
            return replaced_options_error(override.input_line, key, options) + other
    return None


def is_group(key: str) -> bool:
    return "." not in key and (CONF_DIR / key).is_dir()


def compositions(group_overrides) -> list[dict]:
    """The run config (unresolved) under the chosen groups: the first value of each swept group, then
    each other value of one swept group at a time, so a key of any chosen option is known."""
    first = {o.key_or_group: values_of(o)[0] for o in group_overrides if values_of(o)}
    variants = [first] + [{**first, o.key_or_group: value} for o in group_overrides for value in values_of(o)[1:]]
    configs = []
    for choices in variants:
        try:
            config = compose("config", [f"{k}={v}" for k, v in choices.items()])
        except Exception:  # noqa: BLE001 - an unknown choice is check_group_choices' or Hydra's to name
            continue
        configs.append(recorded_config(config, resolve=False))
    return configs


def values_of(override) -> list[str]:
    value = override.value()
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    items = getattr(value, "list", None)  # ChoiceSweep; a range() or glob() of groups is not checked
    if items is not None:
        return [str(v) for v in items]
    return [] if override.is_sweep_override() else [str(value)]


def added_key_error(config) -> str | None:
    """`+detla=0.5` (what Hydra suggests for a typo) would add a key nothing reads: the run would train
    delta = 1.0 and report finished. Every `+` outside hydra.* is refused, naming the closest known key."""
    lines = list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    tree = recorded_config(config, resolve=False)
    added = [o for o in OverridesParser.create().parse_overrides(lines)
             if o.is_add() and not o.key_or_group.startswith("hydra") and not user_callable_key(tree, o.key_or_group)]
    if not added:
        return None
    names = {o.key_or_group for o in added}
    known = [k for k in flat_keys(tree) if k not in names]
    first = added[0]
    key, value = first.key_or_group, first.input_line.split("=", 1)[-1]
    close = closest(key, known)
    fix = (f"did you mean {close}? write {close}={value}" if close
           else "no run reads it; the keys are in conf/config.yaml and its groups")
    return f"unknown key {key} (added with {first.input_line}): {fix}"


def check_overrides(config_name: str, argv: list[str], prog: str) -> None:
    """Every override sets one existing option to one value: Hydra would add a `+key` nobody reads, run
    a sweep `a,b` as its first value, or hand `wandb=3` on where a group of options is expected."""
    parser = OverridesParser.create()
    options = written_defaults(config_name)
    for text in argv:
        try:
            override = parser.parse_override(text)
        except HydraException as err:  # the parser's syntax errors
            raise ConfigError(f"cannot read '{text}' ({first_line(err)}): write key=value with a key of "
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
            close = closest(part, siblings)
            hint = f"did you mean {'.'.join([*parts[:depth], close])}? " if close else ""
            scope = f"{parent} has {', '.join(siblings)}; " if parent and siblings else ""
            raise ConfigError(f"unknown option '{key}': {hint}{scope}{where_options_are(config_name, prog)}")
        node = node[part]
    return node
