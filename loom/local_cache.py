"""This machine's caches of recipient-independent data, for the recipients that follow.

Two kinds live under one folder (``LOOM_CACHE_DIR``; default ``<home>/cache`` for a local home,
else ``~/.cache/better-loom``): ``frames/``, the decoded frames of edited spans
(``loom.media.frame_cache``), and ``files/``, prepared files fetched from remote storage
(``storage.kept_local_path``). Entries are named by a digest of what identifies their source, so a
changed source gets a new entry; together they are bounded by ``LOOM_CACHE_MB`` and the least
recently used go first.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path

log = logging.getLogger("loom.cache")

_SIDECAR = ".json"


def cache_dir() -> Path | None:
    """The cache folder, or None when the caches are switched off (``LOOM_CACHE_MB=0``)."""
    from loom.settings import get_settings

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


def mark_used(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)


def evict(keep: Path) -> None:
    """Remove the least recently used entries while the caches are over ``LOOM_CACHE_MB``
    (``keep``, the entry just written, stays). An entry's ``.json`` sidecar goes with it."""
    from loom.settings import get_settings

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
