"""One door to files: local paths and gs:// (against a GCS emulator on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loom import storage
from loom.errors import InputError
from tests.gcs_fixtures import gcs_bucket  # noqa: F401


def test_local_roundtrip(tmp_path: Path) -> None:
    uri = str(tmp_path / "a" / "b.txt")
    storage.write_text(uri, "hello")
    assert storage.exists(uri) and storage.read_text(uri) == "hello"
    assert storage.exists("file://" + uri)
    with storage.staged_output(str(tmp_path / "c.bin")) as p:
        p.write_bytes(b"123")
    assert (tmp_path / "c.bin").read_bytes() == b"123"
    assert not list(tmp_path.glob("loom-out-*"))  # the staging folder is gone


def test_https_is_read_only() -> None:
    with pytest.raises(InputError, match="cannot write"):
        storage.write_text("https://example.com/x.txt", "no")


def test_gcs_roundtrip(gcs_bucket: str, tmp_path: Path) -> None:  # noqa: F811
    uri = storage.join(gcs_bucket, "dir", "file.bin")
    payload = bytes(range(256)) * 4096  # 1 MiB
    storage.write_bytes(uri, payload)
    assert storage.exists(uri)
    assert storage.read_bytes(uri) == payload
    assert storage.file_digest(uri) == storage.file_digest(_local_copy(tmp_path, payload))
    with storage.local_path(uri) as p:
        assert p.read_bytes() == payload
    with storage.staged_output(storage.join(gcs_bucket, "out", "v.mp4")) as p:
        p.write_bytes(b"video")
    assert storage.read_bytes(storage.join(gcs_bucket, "out", "v.mp4")) == b"video"
    assert any(u.endswith("file.bin") for u in storage.list_dir(storage.join(gcs_bucket, "dir")))
    storage.remove(uri)
    assert not storage.exists(uri)


def _local_copy(tmp_path: Path, payload: bytes) -> str:
    p = tmp_path / "copy.bin"
    p.write_bytes(payload)
    return str(p)
