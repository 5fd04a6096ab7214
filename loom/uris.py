"""Locations as strings: which are remote, and how to join them. No I/O and no settings, so every
module that names a file can use these without importing ``loom.storage``."""

from __future__ import annotations

REMOTE_SCHEMES = ("gs://", "gcs://", "http://", "https://")
READ_ONLY_SCHEMES = ("http://", "https://")


def is_remote(uri: str) -> bool:
    return uri.startswith(REMOTE_SCHEMES)


def strip_file_scheme(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or a URI."""
    base = str(base).rstrip("/")
    tail = "/".join(p.strip("/") for p in parts if p)
    return f"{base}/{tail}" if tail else base
