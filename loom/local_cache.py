"""This machine's caches of recipient-independent data, for the recipients that follow.

They live under one folder (``LOOM_CACHE_DIR``; default ``<home>/cache`` for a local home, else
``~/.cache/better-loom``), a subfolder per kind: ``frames/``, the decoded frames of edited spans
(``loom.media.frame_cache``); ``files/``, prepared files fetched from remote storage
(``storage.kept_local_path``); and small JSON entries (``read_json`` / ``write_json``): ``index/``,
a working video's packet index (``loom.media.render``), ``x264/``, the span encoder's SPS/PPS
(``loom.media.encode``), and ``fonts/``, a font's character coverage (``loom.visual.fonts``).
Entries are named by a digest of what identifies their source, so a changed source gets a new
entry; together they are bounded by ``LOOM_CACHE_MB`` and the least recently used go first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from pathlib import Path

from loom.settings import get_settings
from loom.uris import is_remote

log = logging.getLogger("loom.cache")

_SIDECAR = ".json"


def cache_dir() -> Path | None:
    """The cache folder, or None when the caches are switched off (``LOOM_CACHE_MB=0``)."""
    settings = get_settings()
    if settings.cache_mb <= 0:
        return None
    return Path(settings.local_cache_dir())


def entry_path(kind: str, identity: str, name: str) -> Path | None:
    """Where the entry ``name`` of the source described by ``identity`` lies (None: caches off)."""
    root = cache_dir()
    if root is None:
        return None
    return root / kind / hashlib.sha256(identity.encode()).hexdigest()[:24] / name


def file_identity(uri: str, path: Path) -> str:
    """What names a prepared file's bytes: its URI, size and, for a local file, modification time
    (prepared files are replaced, never rewritten in place). ``path`` is where it lies locally."""
    stat = path.stat()
    return f"{uri}\n{stat.st_size}\n{stat.st_mtime_ns if not is_remote(uri) else ''}"


def read_json(kind: str, identity: str, name: str) -> object | None:
    """A small entry written by ``write_json``, or None (caches off, missing or unreadable)."""
    entry = entry_path(kind, identity, name)
    if entry is None:
        return None
    try:
        value = json.loads(entry.read_text())
    except (OSError, ValueError):
        return None
    mark_used(entry)
    return value


def write_json(kind: str, identity: str, name: str, value: object) -> None:
    """Keep ``value`` as a small JSON entry, whole or not at all; a read-only cache only costs the
    work next time."""
    entry = entry_path(kind, identity, name)
    if entry is None:
        return
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        partial = entry.with_name(f".{entry.name}.{os.getpid()}.{threading.get_ident()}")
        partial.write_text(json.dumps(value))
        partial.replace(entry)
    except OSError:
        return
    evict(keep=entry)


def mark_used(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)


def evict(keep: Path) -> None:
    """Remove the least recently used entries while the caches are over ``LOOM_CACHE_MB``
    (``keep``, the entry just written, stays). An entry's ``.json`` sidecar goes with it."""
    root = cache_dir()
    if root is None:
        return
    limit = get_settings().cache_mb * (1 << 20)
    entries = []
    for item in root.glob("*/*/*"):
        if item.name.startswith(".") or item.suffix == _SIDECAR or not item.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            stat = item.stat()
            entries.append((stat.st_mtime, stat.st_size, item))
    total = sum(size for _, size, _ in entries)
    for _, size, item in sorted(entries, key=lambda e: e[0]):
        if total <= limit:
            break
        if item == keep:
            continue
        with contextlib.suppress(FileNotFoundError):
            item.unlink()
            item.with_suffix(_SIDECAR).unlink(missing_ok=True)
            total -= size
            log.info("cache: evicted %s", item)
