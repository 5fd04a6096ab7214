"""One door to files: local paths, ``file://``, ``gs://`` (gcsfs) and read-only ``https://``.

``http(s)://`` is read through ``loom.fetch`` only (addresses checked hop by hop, time and bytes
bounded per kind of file); fsspec serves ``gs://``.

Everything that reads or writes an artifact goes through here, so a ``gs://`` home works
wherever a local one does. Libraries that need a real path (FFmpeg, OpenCV) get one through
``local_path`` (download to a temp file) and ``staged_output`` (write locally, upload on exit).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from loom import local_cache
from loom.errors import InputError
from loom.settings import get_settings
from loom.uris import READ_ONLY_SCHEMES, REMOTE_SCHEMES, is_remote, join  # noqa: F401  (the door's own names)
from loom.uris import strip_file_scheme as _strip_file_scheme

# gcsfs >= 2026.3 stalls ~60 s per bucket call on its experimental gRPC path against emulators.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

def _filesystem(uri: str) -> tuple[Any, str]:
    """fsspec's filesystem for a remote URI. Local paths never come here: they use ``os`` directly,
    so a local run does not pay fsspec's import (a twentieth of a second per process)."""
    import fsspec

    uri = _strip_file_scheme(str(uri))
    if uri.startswith(("gs://", "gcs://")):
        options: dict[str, Any] = {}
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            options = {"token": "anon", "endpoint_url": emulator}
        fs = fsspec.filesystem("gcs", **options)
        return fs, uri
    raise ValueError(f"not a remote URI: {uri}")


def content_type(uri: str) -> str:
    """The MIME type a browser needs to show a stored file (an object store keeps what it is given:
    a signed link to a video stored as application/octet-stream downloads instead of playing)."""
    import mimetypes

    return mimetypes.guess_type(uri.split("?")[0])[0] or "application/octet-stream"


def _local(uri: str) -> str:
    return os.path.abspath(_strip_file_scheme(str(uri)))


def _is_http(uri: str) -> bool:
    return str(uri).startswith(READ_ONLY_SCHEMES)


def _fetch_bytes(uri: str, kind: str) -> bytes:
    from loom.fetch import fetch_bytes  # httpx only where a URL is read

    return fetch_bytes(str(uri), kind=kind)


def exists(uri: str) -> bool:
    """Whether ``uri`` names a file (an http(s) URL is only known when fetched: True)."""
    if not is_remote(uri):
        return os.path.exists(_local(uri))
    if _is_http(uri):
        return True
    fs, path = _filesystem(uri)
    try:
        return bool(fs.exists(path))
    except (FileNotFoundError, PermissionError):
        return False


def read_bytes(uri: str, *, kind: str = "file", max_bytes: int | None = None) -> bytes:
    """The whole file; with ``max_bytes`` (and for every URL, by ``kind``) a file over the cap
    raises ``loom.fetch.TooLarge`` before it is read into memory."""
    if _is_http(uri):
        return _fetch_bytes(uri, kind)
    if max_bytes is None:
        if not is_remote(uri):
            return Path(_local(uri)).read_bytes()
        fs, path = _filesystem(uri)
        with fs.open(path, "rb") as handle:
            return handle.read()
    with open_uri(uri, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        from loom.fetch import TooLarge

        raise TooLarge(f"the {kind} is over {max_bytes // 2**20} MB", f"use a {kind} under {max_bytes // 2**20} MB")
    return data


def read_text(uri: str, encoding: str = "utf-8") -> str:
    return read_bytes(uri).decode(encoding)


def _check_writable(uri: str) -> None:
    if str(uri).startswith(READ_ONLY_SCHEMES):
        raise InputError("output", f"cannot write to {uri}", "use a local path or gs:// for outputs")


def write_bytes(uri: str, data: bytes) -> str:
    """Write atomically where the backend allows (local: temp file + rename)."""
    _check_writable(uri)
    if is_remote(uri):
        fs, path = _filesystem(uri)
        with fs.open(path, "wb", content_type=content_type(uri)) as handle:
            handle.write(data)
        return uri
    path = _local(uri)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=Path(path).parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be shared like any written file
    os.replace(tmp, path)
    return path


def append_text(uri: str, text: str) -> str:
    """Add ``text`` at the end of a local file (an object store cannot append: callers rewrite)."""
    if is_remote(uri):
        raise ValueError(f"cannot append to {uri}: rewrite it instead")
    with open(_local(uri), "a", encoding="utf-8", newline="") as handle:
        handle.write(text)
    return uri


def write_text(uri: str, text: str) -> str:
    return write_bytes(uri, text.encode("utf-8"))


def open_uri(uri: str, mode: str = "rb") -> IO[Any]:
    if "w" in mode or "a" in mode:
        _check_writable(uri)
    if not is_remote(uri):
        path = _local(uri)
        if "w" in mode or "a" in mode:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return open(path, mode)  # noqa: SIM115  (the caller closes it)
    if _is_http(uri):
        return io.BytesIO(_fetch_bytes(uri, "file"))
    fs, path = _filesystem(uri)
    return fs.open(path, mode)


def remove(uri: str) -> None:
    if not is_remote(uri):
        path = _local(uri)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        return
    fs, path = _filesystem(uri)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path, recursive=True)


def list_dir(uri: str) -> list[str]:
    if not is_remote(uri):
        path = _local(uri)
        try:
            return sorted(os.path.join(path, name) for name in os.listdir(path))
        except (FileNotFoundError, NotADirectoryError):
            return []
    fs, path = _filesystem(uri)
    try:
        names = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    prefix = "gs://" if str(uri).startswith(("gs://", "gcs://")) else ""
    return sorted(prefix + n if prefix and not n.startswith(prefix) else n for n in names)


def file_digest(uri: str, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content (streams; never loads it whole)."""
    digest = hashlib.sha256()
    if _is_http(uri):  # a remote recording: streamed through the fetcher into the hash, never held
        from loom.fetch import fetch_to

        class _Sink:
            def write(self, block: bytes) -> int:
                digest.update(block)
                return len(block)

        fetch_to(str(uri), _Sink(), kind="video")  # type: ignore[arg-type]
        return digest.hexdigest()
    with open_uri(uri, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def local_path(uri: str, suffix: str | None = None) -> Iterator[Path]:
    """A real filesystem path for ``uri``: the file itself if local, else a temp download."""
    uri = _strip_file_scheme(str(uri))
    if not is_remote(uri):
        yield Path(uri)
        return
    suffix = suffix if suffix is not None else Path(uri.split("?")[0]).suffix
    with tempfile.TemporaryDirectory(prefix="loom-dl-") as tmp:
        target = Path(tmp) / f"download{suffix}"
        if _is_http(uri):
            from loom.fetch import fetch_to

            with open(target, "wb") as dst:
                fetch_to(uri, dst, kind="video")  # the largest files read by path: recordings
        else:
            fs, path = _filesystem(uri)
            with fs.open(path, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        yield target


@contextlib.contextmanager
def kept_local_path(uri: str, suffix: str | None = None) -> Iterator[Path]:
    """Like ``local_path``, for files that later recipients read again (a prepared template's
    working video and audio): a remote file is fetched once per machine into the local cache
    (``loom.local_cache``) and reused while its size and generation stay the same, so a recipient's
    I/O follows its edits, not the recording's length."""
    uri = _strip_file_scheme(str(uri))
    if not is_remote(uri):
        yield Path(uri)
        return
    if _is_http(uri):  # no generation to key a cache entry on: fetched each time, checked each time
        with local_path(uri, suffix) as temp:
            yield temp
        return
    fs, path = _filesystem(uri)
    info = fs.info(path)
    version = info.get("generation") or info.get("etag") or info.get("md5Hash") or info.get("mtime") or ""
    name = Path(uri.split("?")[0]).name or "file"
    if suffix and not name.endswith(suffix):
        name += suffix
    entry = local_cache.entry_path("files", f"{uri}\n{info.get('size')}\n{version}", name)
    if entry is None:  # caches off: a temp download, as local_path
        with local_path(uri, suffix) as temp:
            yield temp
        return
    if entry.is_file() and entry.stat().st_size == info.get("size", entry.stat().st_size):
        local_cache.mark_used(entry)
    else:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=entry.parent, prefix=".fetch-")
        try:
            with fs.open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(temp, entry)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        local_cache.evict(keep=entry)
    yield entry


@contextlib.contextmanager
def staged_output(uri: str, suffix: str | None = None) -> Iterator[Path]:
    """A local path to write to; on success it is moved (or uploaded) to ``uri``."""
    _check_writable(uri)
    uri = _strip_file_scheme(str(uri))
    suffix = suffix if suffix is not None else Path(uri).suffix
    if not is_remote(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="loom-out-", dir=None if is_remote(uri) else Path(uri).parent) as tmp:
        target = Path(tmp) / f"staged{suffix}"
        yield target
        if not target.exists():
            return
        if is_remote(uri):
            fs, path = _filesystem(uri)
            fs.put_file(str(target), path, content_type=content_type(uri))
        else:
            os.chmod(target, 0o644)
            os.replace(target, uri)


def home() -> str:
    return get_settings().home
