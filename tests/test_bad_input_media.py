"""Bad media (docs/bad-input.md, rows 8-12): broken or odd recordings, faceless lip-sync windows,
logos that cannot be used. Each case is tried through the engine's public step functions.
"""

from __future__ import annotations

import struct
import wave
import zlib
from pathlib import Path

import numpy as np
import pytest

from loom import pipeline
from loom.edits import AudioInsert
from loom.errors import InputError
from loom.media.patches import PatchSet
from loom.media.probe import probe_video
from loom.settings import reload_settings
from loom.template import parse_template
from loom.visual.logo import load_logo
from testkit.media import make_clip
from tests.test_lipsync_fixtures import random_wav2lip


def _template(video: Path, **extra: object) -> dict:
    data = {
        "id": "media-bad",
        "base_video_path": str(video),
        "voice_segments": [{"id": "hi", "start_time": 0.4, "end_time": 1.2, "template_text": "Hi {client_name}!"}],
        "visual_segments": [],
    }
    data.update(extra)
    return data


def test_video_cut_before_its_index_is_named_and_nothing_is_prepared(tmp_path: Path, loom_home: Path) -> None:
    """An MP4 whose index (moov, written last here) is lost has no decodable video at all: refused.
    (One cut after its index is used up to its last decodable frame: test_real_footage.)"""
    clip = make_clip(tmp_path / "full.mp4", seconds=1.0, size=(160, 120))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    with pytest.raises(InputError) as err:
        probe_video(str(cut))
    assert err.value.field == "base_video_path" and "cut.mp4" in err.value.problem
    with pytest.raises(InputError):
        pipeline.prepare_template(parse_template(_template(cut)))
    assert not (loom_home / "prepared").exists() or not any((loom_home / "prepared").rglob("prepared.json"))


@pytest.mark.parametrize("content", [b"", b"not a video at all\n" * 50, bytes(range(256)) * 64])
def test_corrupt_video_is_named(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(InputError) as err:
        probe_video(str(bad))
    assert err.value.field == "base_video_path"


def test_video_without_one_decodable_frame_is_named(tmp_path: Path, loom_home: Path) -> None:
    """A well-formed MP4 whose every video packet is zeroed: probing works, decoding gives nothing."""
    import av

    clip = make_clip(tmp_path / "full.mp4", seconds=1.6, size=(160, 120), audio=False)
    with av.open(str(clip)) as container:
        spans = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(clip.read_bytes())
    for pos, size in spans:
        data[pos : pos + size] = bytes(size)
    zeroed = tmp_path / "zeroed.mp4"
    zeroed.write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        pipeline.prepare_template(parse_template(_template(zeroed)))
    assert err.value.field == "base_video_path" and "no decodable video frame" in err.value.problem


def test_missing_video_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        pipeline.load_prepared(parse_template(_template(tmp_path / "nope.mp4")))
    assert err.value.field == "base_video_path" and "no video" in err.value.problem


def test_video_without_audio_gets_a_silent_track(tmp_path: Path, loom_home: Path) -> None:
    clip = make_clip(tmp_path / "mute.mp4", seconds=1.6, size=(160, 120), audio=False)
    prepared = pipeline.prepare_template(parse_template(_template(clip)))
    assert prepared.audio_uri and Path(prepared.audio_uri).is_file()
    with wave.open(prepared.audio_uri) as wav:
        frames = wav.readframes(wav.getnframes())
        seconds = wav.getnframes() / wav.getframerate()
    assert abs(seconds - prepared.video.duration) < 0.05
    assert not np.any(np.frombuffer(frames, np.int16))  # digital silence where there was no sound


def _tone_wav(path: Path, seconds: float, rate: int = 48000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return path


def test_no_face_in_a_lipsync_window_leaves_the_frames_alone(
    tmp_path: Path, loom_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loom.lipsync import engine

    clip = make_clip(tmp_path / "noface.mp4", seconds=1.6, size=(160, 120))
    prepared = pipeline.prepare_template(parse_template(_template(clip)))
    assert any("no face" in w for w in prepared.qa), prepared.qa  # said once, at prepare time

    with random_wav2lip(tmp_path, monkeypatch):
        segment = prepared.template.voice_segments[0]
        insert = AudioInsert(
            segment_id="hi", uri=str(_tone_wav(tmp_path / "line.wav", 0.8)), start=0.4, end=1.2, sample_rate=48000
        )
        ref = engine.lipsync_segment(prepared, segment, insert, str(tmp_path / "lips.npz"))
    assert ref is not None and ref.frames_patched == 0
    assert ref.qa["frames_without_face"] == ref.stop_frame - ref.first_frame > 0
    assert PatchSet.load(ref.uri).frames == {}


def test_personalize_lipsyncs_only_where_a_backend_is_configured(
    tmp_path: Path, loom_home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With a checkpoint the recipient waits for its line and runs lip-sync (no face in this clip:
    nothing patched); without one it warns once and the render does not wait for the voice."""
    import logging

    from loom.lipsync import engine
    from loom.lipsync.checkpoint import write_random_checkpoint
    from loom.lipsync.notice import forget_warning

    clip = make_clip(tmp_path / "noface.mp4", seconds=2.4, size=(160, 120))
    data = _template(clip, voice_segments=[{"id": "hi", "start_time": 0.3, "end_time": 2.0, "template_text": "Hi {client_name}!"}])
    template = parse_template(data)
    forget_warning()  # an earlier test in this process may have warned already
    with caplog.at_level(logging.WARNING, logger="loom.lipsync"):
        plain = pipeline.personalize(template, {"client_name": "Ada"}, str(tmp_path / "plain.mp4"))
        again = pipeline.personalize(template, {"client_name": "Al"}, str(tmp_path / "again.mp4"))
    assert [p.kind for p in plain.patches] == [] == [p.kind for p in again.patches] and plain.lipsync_checkpoint is None
    # said once per process: two recipients, one warning
    assert sum("lip-sync skipped" in r.getMessage() for r in caplog.records) == 1

    monkeypatch.setenv("LOOM_WAV2LIP_CHECKPOINT", str(write_random_checkpoint(tmp_path / "w2l.pth", seed=5)))
    monkeypatch.setenv("LOOM_WAV2LIP_DEVICE", "cpu")
    reload_settings()
    engine.reset_engine()
    try:
        synced = pipeline.personalize(template, {"client_name": "Bea"}, str(tmp_path / "synced.mp4"))
    finally:
        monkeypatch.undo()
        reload_settings()
        engine.reset_engine()
    (lips,) = [p for p in synced.patches if p.kind == "lipsync"]
    assert lips.segment_id == "hi" and lips.frames_patched == 0 and lips.qa["frames_without_face"] > 0
    assert synced.lipsync_checkpoint is not None and Path(synced.output_uri).is_file()


def test_unreachable_logo_is_named() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(InputError) as err:
        load_logo(f"http://127.0.0.1:{port}/logo.png", "logo")
    assert err.value.field == "logo" and "cannot read logo" in err.value.problem


@pytest.mark.parametrize("content", [b"<html>not found</html>", b"GIF89a-but-not-really", b""])
def test_non_image_logo_is_named(tmp_path: Path, content: bytes) -> None:
    fake = tmp_path / "logo.png"
    fake.write_bytes(content)
    with pytest.raises(InputError) as err:
        load_logo(str(fake), "logo")
    assert err.value.field == "logo"


def _png_bomb(width: int, height: int, rows: int | None = None) -> bytes:
    """A valid 1-bit all-black PNG of ``width`` x ``height``: kilobytes on disk, gigabytes decoded.

    ``rows`` stores only that many rows (a header that promises more than the body holds).
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    body = zlib.compressobj(9)
    idat = b"".join(body.compress(row) for _ in range(height if rows is None else rows)) + body.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size,rows", [((30_000, 30_000), 64), ((12_000, 8_000), None)])
def test_huge_logo_is_refused_before_decoding(tmp_path: Path, size: tuple[int, int], rows: int | None) -> None:
    """Kilobytes that would decode to hundreds of MB (a decompression bomb) are refused from the
    header's size. 96 MP is under PIL's own hard limit (179 MP), which only warns there."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_bomb(*size, rows=rows))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(InputError) as err:
        load_logo(str(bomb), "logo")
    assert err.value.field == "logo" and "pixels" in err.value.problem, err.value.line()
