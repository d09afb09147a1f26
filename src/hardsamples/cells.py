"""A cell: the runs whose seeds may be averaged, defined once.

A cell is everything but the seed that tells runs apart:
  dataset, model      the dataset's and the timm model's names
  setup               the protocol (the fidelity, named with any key switched from its defaults:
                      "paper_code (eval_batchnorm=eval)"), E, the batch size and the image size
  method, variant     the method as recorded (`standard` for Algorithm 1, whichever method config ran
                      it), and its options where they differ from conf/method/<method>.yaml
                      ("shape=cosine"); Algorithm 1 has none
  delta
  settings            every other config key whose value differs between runs that agree on all the
                      above: the keys a sweep varies (optimizer.lr=0.01), as "key=value; key=value"

Three readers use it: the sweep's summary (sweep/summary.py), the W&B group (wandb_mirror.py) and the tables
(analysis/aggregate.py). The summary and the tables find the setting keys among the records they read
(`varying_keys`); a W&B run, logged on its own, takes the keys its sweep varies (`setting_keys`): for a
sweep the two agree. No torch here.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable

from hardsamples.record_files import NOT_COMPARED, flat_config

SETUP = ["fidelity", "epochs", "batch_size", "image_size"]  # the protocol, E, B and size: what two records must share
# In this order: every field before "settings" is a block of the tables (what delta = 1 is compared within).
FIELDS = ["dataset", "model", *SETUP, "settings", "method", "variant", "delta"]
# Config keys a cell's own fields cover (with the seed and the run name, which are never a cell's): a
# key equal to one of these, or under one of COVERED_TREES, is never a setting. `model` and `dataset`
# are the config groups (model=resnet50), whose other keys are settings (dataset.root).
COVERED = {"model", "model.name", "dataset", "dataset.name", "delta", "epochs", "batch_size", "image_size", "seed",
           "run_name", "preset", "experiment"}
COVERED_TREES = ("method", "fidelity")
SEPARATOR = "; "  # between the settings of one cell


def is_setting(key: str) -> bool:
    """Whether a config key (dotted) may tell two runs of one cell apart."""
    top = key.split(".")[0]
    return bool(key) and top != "hydra" and top not in NOT_COMPARED and key not in COVERED \
        and top not in COVERED_TREES


def setting_keys(swept: Iterable[str]) -> list[str]:
    """The keys a sweep varies that are settings of a cell (the others are among its own fields)."""
    return sorted({key.lstrip("+~") for key in swept if is_setting(key.lstrip("+~"))})


def value_text(value) -> str:
    """A setting's value as it is printed and compared: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def flat_settings(config: dict) -> dict[str, str]:
    """Every setting of a run's resolved config, by its dotted key (lists kept whole)."""
    leaves = flat_config(config if isinstance(config, dict) else {})
    return {key: value_text(value) for key, value in leaves.items() if is_setting(key)}


def select_settings(config: dict, keys: Iterable[str]) -> dict[str, str]:
    """The given keys of a run's config; a key naming a node gives each of its leaves."""
    flat = flat_settings(config)
    chosen = {}
    for key in keys:
        under = {k: v for k, v in flat.items() if k == key or k.startswith(key + ".")}
        chosen.update(under or {key: "null"})  # a key this config lacks (an older record)
    return chosen


def varying_keys(identities: list[tuple], settings: list[dict[str, str]]) -> list[str]:
    """The setting keys whose value differs between runs of one identity (every field but the
    settings): what a sweep varied. A key one run lacks counts as the value null."""
    values: dict[tuple, dict[str, set]] = {}
    for identity, flat in zip(identities, settings):
        values.setdefault(identity, {})
        for key in flat:
            values[identity].setdefault(key, set())
    for identity, flat in zip(identities, settings):
        for key, seen in values[identity].items():
            seen.add(flat.get(key, "null"))
    return sorted({key for keys in values.values() for key, seen in keys.items() if len(seen) > 1})


def settings_text(flat: dict[str, str], keys: Iterable[str]) -> str:
    """A cell's settings: "key=value; key=value" over the keys given, in their order ('' for none)."""
    return SEPARATOR.join(f"{key}={flat.get(key, 'null')}" for key in keys)


def split_settings(text: str) -> dict[str, str]:
    """settings_text back into {key: value}."""
    if not isinstance(text, str) or not text:
        return {}
    return dict(part.split("=", 1) for part in text.split(SEPARATOR))


# --- the method's variant and the protocol's switched keys --------------------------------------

@functools.lru_cache(maxsize=None)
def conf_defaults(group: str, name: str) -> dict:
    """conf/<group>/<name>.yaml as a run composes it (its `defaults` parents merged in), interpolations
    unresolved: conf/config.yaml composed by Hydra with <group>=<name>, that node. {} for a name that
    conf/<group>/ no longer has (a record from an older checkout)."""
    from omegaconf import OmegaConf

    from hardsamples.cli import compose
    from hardsamples.layout import group_choices

    if name not in group_choices(group):
        return {}
    return OmegaConf.to_container(compose("config", [f"{group}={name}"])[group], resolve=False)


def changed_options(group: str, name, options) -> str:
    """The options of a run's method or fidelity that differ from conf/<group>/<name>.yaml, as
    'key=value, ...' (empty when there are none)."""
    if not isinstance(name, str) or not isinstance(options, dict):
        return ""
    defaults = conf_defaults(group, name)
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items())
                     if k != "name" and not k.startswith("tag") and defaults.get(k) != v)


def variant(method, config: dict) -> str:
    """A method's options where they differ from its defaults; Algorithm 1 (standard) has none."""
    return "" if method == "standard" else changed_options("method", method, config.get("method"))


def protocol_name(fidelity, config: dict) -> str:
    """The fidelity, with any key switched from its defaults: another protocol, never averaged in."""
    switched = changed_options("fidelity", fidelity, config.get("fidelity"))
    return f"{fidelity} ({switched})" if switched else fidelity


# --- one run's cell ----------------------------------------------------------------------------

def cell_of(header: dict, keys: Iterable[str]) -> dict:
    """A run's cell from its run.json (or a tables row with the same fields), with the settings of
    the given keys."""
    config = header.get("config") if isinstance(header.get("config"), dict) else {}
    cell = {field: header.get(field) for field in ("dataset", "model", "epochs", "batch_size", "image_size",
                                                   "method", "delta")}
    cell.update(fidelity=protocol_name(header.get("fidelity"), config), variant=variant(header.get("method"), config),
                settings=settings_text(select_settings(config, keys), keys))
    return {field: cell[field] for field in FIELDS}


def identity(cell: dict) -> tuple:
    """Every field but the settings: what varying_keys compares within."""
    return tuple(str(cell[field]) for field in FIELDS if field != "settings")


def setup_text(cell) -> str:
    """The setup in words for a table or a line: 'paper_code, E=20, B=512, 16 px'."""
    return f"{cell['fidelity']}, E={g(cell['epochs'])}, B={g(cell['batch_size'])}, {g(cell['image_size'])} px"


def g(value) -> str:
    """A number as %g prints it (20, not 20.0); anything else (a record without the field) as it is."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def method_text(cell) -> str:
    """The method with its variant: 'trimming (shape=cosine)'."""
    return cell["method"] + (f" ({cell['variant']})" if cell["variant"] else "")


def label(cell: dict) -> str:
    """One line's name for a cell (the sweep summary):
    'test_resnet digits hard_batches d0.5 paper_code E10 B64 16px optimizer.lr=0.01'."""
    parts = [cell["model"], cell["dataset"], method_text(cell), f"d{cell['delta']}", str(cell["fidelity"]),
             f"E{g(cell['epochs'])}", f"B{g(cell['batch_size'])}", f"{g(cell['image_size'])}px"]
    return " ".join(parts + [cell["settings"].replace(SEPARATOR, " ")] * bool(cell["settings"]))


def group(sweep: str, cell: dict) -> str:
    """A W&B group: the sweep, then the cell's fields, '/' between them:
    'demo/test_resnet/digits/hard_batches/d0.5/paper_code/E10_B64_16px/optimizer.lr=0.01'."""
    parts = [sweep, cell["model"], cell["dataset"], method_text(cell), f"d{cell['delta']}", str(cell["fidelity"]),
             f"E{g(cell['epochs'])}_B{g(cell['batch_size'])}_{g(cell['image_size'])}px"]
    return "/".join(str(part) for part in parts + split_text(cell["settings"]))


def split_text(settings: str) -> list[str]:
    return [f"{key}={value}" for key, value in split_settings(settings).items()]


def cells_of(headers: list[dict]) -> list[dict]:
    """The cells of runs read together (a sweep's summary, the tables): their settings are the keys
    whose value differs between runs of one identity."""
    bare = [cell_of(header, ()) for header in headers]
    flats = [flat_settings(header.get("config")) for header in headers]
    keys = varying_keys([identity(cell) for cell in bare], flats)
    return [{**cell, "settings": settings_text(flat, keys)} for cell, flat in zip(bare, flats)]


def settings_sort_key(text: str) -> tuple:
    """Settings in numeric order where their values are numbers (lr 0.005 before 0.05 before 0.5)."""
    def value_key(value: str):
        try:
            return (0, float(value), "")
        except ValueError:
            return (1, 0.0, value)

    return tuple((key, value_key(value)) for key, value in split_settings(text).items())
