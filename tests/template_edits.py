"""Template JSON with one value changed: how the template tests make each variant of a good one."""

from __future__ import annotations

import copy
from collections.abc import Sequence


def edited(data: dict, path: Sequence[str | int], value: object) -> dict:
    """A deep copy of ``data`` with the value at ``path`` (keys and list indices) set to ``value``."""
    out = copy.deepcopy(data)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out
