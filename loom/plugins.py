"""Lip-sync backends and visual effects found through Python entry points.

Two groups, one way in: ``better_loom.lipsync`` (a class with ``sync(video_path, audio_path,
output_path, **kwargs)``) and ``better_loom.visual`` (a class with ``apply(frame, box, params)``).
The built-ins (``wav2lip``, ``synclabs``, ``text``, ``image``) register through the same groups in
this project's ``pyproject.toml``, so a plugin package is found exactly as they are.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from loom.errors import InputError

LIPSYNC_GROUP = "better_loom.lipsync"
VISUAL_GROUP = "better_loom.visual"
GROUPS = (LIPSYNC_GROUP, VISUAL_GROUP)

_lock = threading.Lock()
_found: dict[str, dict[str, EntryPoint]] = {}
_loaded: dict[tuple[str, str], Any] = {}


@dataclass(frozen=True)
class PluginInfo:
    name: str
    group: str
    package: str
    version: str
    target: str


def installed(group: str) -> dict[str, EntryPoint]:
    """The entry points of ``group`` by name, read once per process (the first of a name wins)."""
    with _lock:
        if group not in _found:
            found: dict[str, EntryPoint] = {}
            for ep in entry_points(group=group):
                found.setdefault(ep.name, ep)
            _found[group] = found
        return _found[group]


def forget_installed() -> None:
    """Read the entry points again on next use (a package was installed or removed)."""
    with _lock:
        _found.clear()
        _loaded.clear()


def plugin_list() -> list[PluginInfo]:
    """Every installed plugin of both groups: name, group, package and version."""
    rows = []
    for group in GROUPS:
        for name, ep in sorted(installed(group).items()):
            dist = ep.dist
            rows.append(
                PluginInfo(
                    name=name,
                    group=group,
                    package=dist.metadata["Name"] if dist is not None else "?",
                    version=dist.version if dist is not None else "?",
                    target=ep.value,
                )
            )
    return rows


def _not_installed(found: dict[str, EntryPoint], name: str, field: str, what: str) -> InputError:
    names = ", ".join(sorted(found)) or "none"
    return InputError(field, f"no {what} named {name!r} is installed", f"use one of: {names}; `loom plugins` lists them")


def _instance(group: str, name: str, field: str, what: str) -> Any:
    key = (group, name)
    with _lock:
        if key in _loaded:
            return _loaded[key]
    found = installed(group)
    if name not in found:
        raise _not_installed(found, name, field, what)
    try:
        plugin = found[name].load()()
    except Exception as exc:  # a broken plugin is named, not a traceback from inside it
        raise InputError(field, f"the {what} {name!r} ({found[name].value}) failed to load: {exc}", "fix or reinstall its package") from None
    with _lock:
        return _loaded.setdefault(key, plugin)


def lipsync_backend(name: str) -> Any:
    """The backend registered as ``name`` (one instance per process)."""
    return _instance(LIPSYNC_GROUP, name, "LOOM_LIPSYNC_BACKEND", "lip-sync backend")


def check_lipsync_backend(name: str) -> None:
    """Fail at start, with one line naming the installed backends, when ``name`` is not one of them."""
    found = installed(LIPSYNC_GROUP)
    if name not in found:
        raise _not_installed(found, name, "LOOM_LIPSYNC_BACKEND", "lip-sync backend")


def visual_effect(name: str, field: str = "segment_type") -> Any:
    """The visual effect registered as ``name`` (one instance per process)."""
    return _instance(VISUAL_GROUP, name, field, "visual effect")


def visual_effect_names() -> list[str]:
    return sorted(installed(VISUAL_GROUP))


def effect_params(effect: Any, params: dict[str, Any] | None, field: str) -> dict[str, Any]:
    """A segment's ``params``, checked by the effect's own pydantic model when it declares one
    (``Params``), with the first problem as one line naming the field."""
    model = getattr(effect, "Params", None)
    if model is None:
        return dict(params or {})

    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return dict(params or {})
    try:
        return model.model_validate(params or {}).model_dump(mode="json")
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InputError(f"{field}.{where}" if where else field, err["msg"], "see the effect's documentation") from None
