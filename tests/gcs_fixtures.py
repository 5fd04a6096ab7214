"""A GCS emulator on 127.0.0.1 (gcp-storage-emulator, in-process) for gs:// tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gcs_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """gs://<bucket> served by an in-memory emulator; STORAGE_EMULATOR_HOST points at it."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="loom-test")
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    import gcsfs

    gcsfs.GCSFileSystem.clear_instance_cache()
    try:
        yield "gs://loom-test"
    finally:
        gcsfs.GCSFileSystem.clear_instance_cache()
        server.stop()
