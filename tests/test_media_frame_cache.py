"""The decoded-frame cache: a later recipient's render reads the spans' original frames instead of
decoding them, and gets exactly the pixels (and so the video) the decoder gave the first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loom.media import cut_plan, encode, frames, patched_frames
from loom.local_cache import cache_dir
from loom.media.frame_cache import span_frames
from loom.media.render import render_recipient
from testkit.media import make_clip
from tests.test_media_render import SPAN, box_patches, prepared_for, video_packets


def _planes(frame) -> np.ndarray:  # noqa: ANN001
    return frame.to_ndarray(format="yuv420p")


def _entries() -> list[Path]:
    root = cache_dir()
    return sorted((root / "frames").glob("*/*.yuv")) if root is not None and root.exists() else []


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "rec.mp4", seconds=2.0, gop=12, bframes=2)


def test_cached_frames_are_the_decoded_frames(loom_home: Path, clip: Path) -> None:
    decoded = [(i, _planes(f)) for i, f in frames.read_video_frames(str(clip), 7, 31)]
    first_pass = [(i, _planes(f)) for i, f in span_frames(str(clip), clip, 7, 31)]  # decodes, stores
    assert len(_entries()) == 1 and _entries()[0].stat().st_size == 24 * 320 * 240 * 3 // 2
    second_pass = list(span_frames(str(clip), clip, 7, 31))  # reads the entry
    assert [i for i, _ in second_pass] == [i for i, _ in decoded] == list(range(7, 31))
    for (_, want), (_, got), (_, cached) in zip(decoded, first_pass, second_pass):
        assert np.array_equal(want, got) and np.array_equal(want, _planes(cached))
    head = next(frames.read_video_frames(str(clip), 7, 8))[1]
    assert (second_pass[0][1].colorspace, second_pass[0][1].color_range) == (head.colorspace, head.color_range)


def test_writing_into_a_cached_frame_leaves_the_entry_as_it_was(loom_home: Path, clip: Path) -> None:
    from loom.media.overlay import plane_views

    originals = [_planes(f) for _, f in span_frames(str(clip), clip, 0, 10)]
    before = _entries()[0].read_bytes()
    to_write = {2, 3, 7}  # copied whole; the others are copy-on-write views of the entry
    for index, frame in span_frames(str(clip), clip, 0, 10, to_write=to_write):
        assert np.array_equal(_planes(frame), originals[index])  # a copy holds the same pixels
        plane_views(frame)[0][:] = 7  # what patching does to a frame
    assert _entries()[0].read_bytes() == before
    assert all(np.array_equal(_planes(f), originals[i]) for i, f in span_frames(str(clip), clip, 0, 10))


def test_a_render_that_stops_early_or_a_broken_entry_stores_nothing_wrong(loom_home: Path, clip: Path) -> None:
    partial = span_frames(str(clip), clip, 5, 20)
    next(partial)
    partial.close()
    assert _entries() == [] and not list((cache_dir() / "frames").glob("*/.*"))  # no entry, no temp file left
    list(span_frames(str(clip), clip, 5, 20))
    entry = _entries()[0]
    entry.write_bytes(entry.read_bytes()[:1000])  # truncated: ignored, decoded again and replaced
    again = [(i, _planes(f)) for i, f in span_frames(str(clip), clip, 5, 20)]
    want = [(i, _planes(f)) for i, f in frames.read_video_frames(str(clip), 5, 20)]
    assert [i for i, _ in again] == [i for i, _ in want]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(again, want))
    assert entry.stat().st_size == 15 * 320 * 240 * 3 // 2


def test_switched_off_and_evicted_past_its_size(loom_home: Path, clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loom.settings import reload_settings

    monkeypatch.setenv("LOOM_CACHE_MB", "0")
    reload_settings()
    assert cache_dir() is None
    assert len(list(span_frames(str(clip), clip, 0, 10))) == 10
    assert not (loom_home / "cache").exists()
    monkeypatch.setenv("LOOM_CACHE_MB", "2")  # one 15-frame span at 320x240 is 1.7 MiB
    reload_settings()
    list(span_frames(str(clip), clip, 0, 15))
    list(span_frames(str(clip), clip, 20, 35))
    assert [e.name for e in _entries()] == ["20-35.yuv"]  # the older entry went to make room


def test_a_later_recipient_renders_without_decoding_and_gets_the_same_video(
    loom_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_clip(tmp_path / "rec.mp4", seconds=3.0, gop=20, bframes=2)
    prepared = prepared_for(src, tmp_path / "prep", list(SPAN))
    patches = [box_patches(prepared, tmp_path / "a.npz", (255, 0, 0))]
    first = render_recipient(prepared, [], patches, str(tmp_path / "first.mp4"))
    assert len(_entries()) == len(first.reencoded_spans) == 1

    def no_decoding(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a later recipient decoded a span the cache holds")

    monkeypatch.setattr(frames, "read_video_frames", no_decoding)
    monkeypatch.setattr(patched_frames, "read_video_frames", no_decoding)
    # the packet index and the span encoder's SPS/PPS come from the cache too
    monkeypatch.setattr(cut_plan, "_scan_packets", no_decoding)
    monkeypatch.setattr(encode.SpanEncoder, "_encode_headers", no_decoding)
    later = render_recipient(prepared, [], patches, str(tmp_path / "later.mp4"))
    assert later.mode == "splice" and later.reencoded_spans == first.reencoded_spans
    assert video_packets(later.output_uri) == video_packets(first.output_uri)  # same pixels in, same packets out


def test_a_broken_packet_index_or_header_entry_is_made_again(loom_home: Path, clip: Path, tmp_path: Path) -> None:
    prepared = prepared_for(clip, tmp_path / "prep", list(SPAN))
    patches = [box_patches(prepared, tmp_path / "a.npz", (0, 0, 255))]
    first = render_recipient(prepared, [], patches, str(tmp_path / "first.mp4"))
    root = cache_dir()
    assert root is not None
    index, headers = sorted(root.glob("index/*/packets.json")), sorted(root.glob("x264/*/headers.json"))
    assert len(index) == 1 and headers  # one header entry per parameter-set id tried
    kept = index + headers
    for entry in kept:
        entry.write_text("{not json")
    later = render_recipient(prepared, [], patches, str(tmp_path / "later.mp4"))
    assert video_packets(later.output_uri) == video_packets(first.output_uri)
    assert all(entry.read_text().startswith(("{", "[")) and entry.read_text() != "{not json" for entry in kept)
