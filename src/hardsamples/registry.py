"""Things found by the name a config gives them, each added by a decorator where it is defined: the
methods' policies (policies.py) and the dataset sources (data.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from hardsamples.errors import ConfigError

T = TypeVar("T")


class Registry(dict):
    """name -> thing. `kind` names what the config key chooses and `where` where its choices are
    configured, for the one line a wrong name gets."""

    def __init__(self, kind: str, where: str = ""):
        super().__init__()
        self.kind, self.where = kind, where

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: the decorated function is what `name` finds."""
        def register(thing: T) -> T:
            self[name] = thing
            return thing
        return register

    def find(self, name: str):
        if name not in self:
            where = f" ({self.where})" if self.where else ""
            raise ConfigError(f"unknown {self.kind} '{name}': use {', '.join(self)}{where}")
        return self[name]
