"""The keys of a config as a tree of dicts: whether a dotted key is there, every key, the arguments of a
user's own class (any name may be added there), and the known key closest to a misspelt one."""

from __future__ import annotations

import difflib


def value_at(config: dict, key: str):
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def has_key(config: dict, key: str) -> bool:
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def flat_keys(node, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}{key}"
            keys.append(path)
            keys += flat_keys(value, path + ".")
    return keys


def user_callable_key(config: dict, key: str) -> bool:
    """`X._target_` itself (a user's class for a node, e.g. optimizer._target_=torch.optim.AdamW), or a
    key under a node that has one (its arguments)."""
    return key.endswith("._target_") or under_target(config, key)


def under_target(config: dict, key: str) -> bool:
    """A key inside a node with `_target_` (dataset=custom's dataset.data) is an argument of the user's
    own callable: any name may be added there."""
    node = config
    for part in key.split(".")[:-1]:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
        if isinstance(node, dict) and "_target_" in node:
            return True
    return False


def closest(key: str, known: list[str]) -> str | None:
    """The known key most like a mistyped one (difflib), or None."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return close[0] if close else None
