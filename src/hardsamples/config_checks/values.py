"""The rules for one value, shared by every config that is checked (a run's, the bench's) and by the
sampler's own guard: a number, a whole number, a minimum, a limit, one of a fixed set of choices. Each refusal is a ConfigError of one
line naming the key and the fix."""

from __future__ import annotations

import math

from omegaconf import DictConfig, OmegaConf

from hardsamples.errors import ConfigError


def require_number(cfg: DictConfig, key: str, example: str) -> float:
    """The value at key, refused unless it is an int or a float (a boolean is not a number)."""
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value} is not a number: write a number, e.g. {example}")
    return value


def non_negative(cfg: DictConfig, key: str, example: str) -> float:
    """A finite number >= 0 (a learning rate, a momentum, a noise level)."""
    value = require_number(cfg, key, f"{key}={example}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{key}={value} is not a finite number >= 0: use e.g. {key}={example}")
    return value


def whole(cfg: DictConfig, key: str, example: str) -> int:
    """A whole number written as one: 32.0 (or 1e9) is refused, since the run would carry the float into
    shapes and counts (and into its recorded config) where an integer belongs."""
    value = OmegaConf.select(cfg, key)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        raise ConfigError(f"{key}={value} is not written as a whole number: write {key}={int(value)}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}={value} is not a whole number: write one, e.g. {example}")
    return value


def at_most(cfg: DictConfig, key: str, value: float, limit_key: str) -> None:
    """A size beyond limits.<name> is refused as a likely typo; the limit names how to raise it on purpose."""
    limit = OmegaConf.select(cfg, f"limits.{limit_key}")
    if limit is not None and value > limit:
        raise ConfigError(f"{key}={value} is above limits.{limit_key}={limit} (a run this large is more likely a typo"
                          f" than meant): use a smaller {key}, or raise the limit deliberately with"
                          f" limits.{limit_key}=<value>")


def at_least(cfg: DictConfig, key: str, minimum: int, why: str = "") -> int:
    value = whole(cfg, key, f"{key}={max(minimum, 2 * minimum)}")
    if value < minimum:
        raise ConfigError(f"{key}={value} is too small{why}: use {key}={minimum} or more")
    return value


def is_choice(value, allowed: tuple) -> bool:
    """value is one of allowed; a boolean matches only a boolean (Python's `no` is truthy and 1 == True,
    so record.checkpoint=no or channels_last=1 would otherwise pass as a choice)."""
    return any(value == a and isinstance(value, bool) == isinstance(a, bool) for a in allowed)


def one_of(key: str, value, allowed: tuple) -> None:
    """value must be one of allowed (is_choice)."""
    if not is_choice(value, allowed):
        shown = ", ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in allowed)
        raise ConfigError(f"{key}={value} is not one of its choices: use {shown}")
