"""The base video's digest is remembered per (path, size, mtime) and never trusted past a change."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from loom import pipeline
from loom.settings import reload_settings


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOOM_HOME", str(tmp_path / "home"))
    reload_settings()
    yield tmp_path / "home"
    monkeypatch.delenv("LOOM_HOME")
    reload_settings()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_digest_is_remembered_and_redone_when_the_file_changes(home: Path, tmp_path: Path) -> None:
    video = tmp_path / "base.mp4"
    video.write_bytes(b"a" * 5000)
    assert pipeline.base_video_digest(str(video)) == _sha(video)
    memos = list((home / "digests").glob("*.txt"))
    assert len(memos) == 1

    # a remembered digest is used as long as path, size and mtime match ...
    stat = video.stat()
    memo_text = memos[0].read_text().split("\n")
    memos[0].write_text(f"{memo_text[0]}\n{'f' * 64}\n")
    assert pipeline.base_video_digest(str(video)) == "f" * 64

    # ... and not once the content changes (same size, new mtime)
    video.write_bytes(b"b" * 5000)
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert pipeline.base_video_digest(str(video)) == _sha(video)


def test_a_broken_memo_falls_back_to_hashing(home: Path, tmp_path: Path) -> None:
    video = tmp_path / "base.mp4"
    video.write_bytes(b"c" * 3000)
    pipeline.base_video_digest(str(video))
    for memo in (home / "digests").glob("*.txt"):
        memo.write_text("garbage")
    assert pipeline.base_video_digest(str(video)) == _sha(video)
