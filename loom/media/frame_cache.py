"""Decoded frames of the working video's edited spans, kept on a local disk for later recipients.

Every recipient of a template re-encodes the same spans of the same working video, so decoding
them is recipient-independent work: at 720p it is about a third of a recipient's render on two
cores. The first render that decodes a span stores its frames here, raw (4:2:0 planes without
row padding); later renders on the same machine map them (copy-on-write; a frame about to be
patched is copied whole first) and get the same pixels the decoder gave. Entries are keyed by the
video's URI, size and modification time (prepared files are never rewritten in place), written
whole or not at all, and share ``loom.local_cache``'s folder and bound.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Container, Iterator
from pathlib import Path

import av
import numpy as np

from loom import local_cache
from loom.media.frames import read_video_frames

_SUFFIX = ".yuv"
_COLOUR = ("colorspace", "color_range", "color_primaries", "color_trc")


def _entry(uri: str, path: Path, first: int, stop: int) -> Path | None:
    return local_cache.entry_path("frames", local_cache.file_identity(uri, path), f"{first}-{stop}{_SUFFIX}")


def _plane_shapes(width: int, height: int) -> list[tuple[int, int]]:
    return [(height, width), (height // 2, width // 2), (height // 2, width // 2)]


def _write_frame(handle, frame: av.VideoFrame) -> None:  # noqa: ANN001
    for plane, (h, w) in zip(frame.planes, _plane_shapes(frame.width, frame.height)):
        if plane.line_size == w:
            handle.write(memoryview(plane)[: h * w])
        else:
            handle.write(np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:h, :w].tobytes())


def _cached(entry: Path, first: int, stop: int, to_write: Container[int] = ()) -> Iterator[tuple[int, av.VideoFrame]] | None:
    """The stored frames, or None when there is no complete entry. The frames are views of a
    copy-on-write map of the file (a write stays private to this process), except those in
    ``to_write``, which are copies."""
    try:
        meta = json.loads(entry.with_suffix(".json").read_text())
        width, height = int(meta["width"]), int(meta["height"])
        if entry.stat().st_size != (stop - first) * width * height * 3 // 2:
            return None
        stored = np.memmap(entry, np.uint8, mode="c").reshape(stop - first, height * 3 // 2, width)
    except (OSError, ValueError, KeyError):
        return None
    local_cache.mark_used(entry)

    def frames() -> Iterator[tuple[int, av.VideoFrame]]:
        for k in range(stop - first):
            planes = np.array(stored[k]) if first + k in to_write else stored[k]
            frame = av.VideoFrame.from_numpy_buffer(planes, format="yuv420p")
            for name, value in meta["colour"].items():
                setattr(frame, name, value)
            yield first + k, frame

    return frames()


def _storing(frames: Iterator[tuple[int, av.VideoFrame]], entry: Path, first: int, stop: int) -> Iterator[tuple[int, av.VideoFrame]]:
    """Pass the decoded frames on, writing them to ``entry`` as they go; the entry appears only once
    every frame of [first, stop) has been written (a render that stops early leaves nothing)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    temp = entry.with_name(f".{entry.name}.{os.getpid()}.{threading.get_ident()}")
    expected, meta, storing = first, None, True
    try:
        with open(temp, "wb") as handle:
            for index, frame in frames:
                if meta is None:
                    meta = {"width": frame.width, "height": frame.height,
                            "colour": {name: int(getattr(frame, name)) for name in _COLOUR}}
                if storing and (index != expected or frame.format.name != "yuv420p" or frame.width % 2
                                or frame.height % 2 or (frame.width, frame.height) != (meta["width"], meta["height"])):
                    storing = False  # not a plain run of 4:2:0 frames: pass them on, store nothing
                if storing:
                    _write_frame(handle, frame)
                expected += 1
                yield index, frame
        if storing and expected == stop and meta is not None:
            entry.with_suffix(".json").write_text(json.dumps(meta))
            os.replace(temp, entry)
            local_cache.evict(keep=entry)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def span_frames(
    uri: str, path: Path, first: int, stop: int, to_write: Container[int] = ()
) -> Iterator[tuple[int, av.VideoFrame]]:
    """Frames [first, stop) of the video at ``path`` (whose URI is ``uri``), in display order:
    read from the cache when an earlier render stored them, else decoded (one thread, beside the
    busy encoder) and stored for the next. Cached frames whose index is in ``to_write`` (those the
    caller will draw on) come in private memory: copying a frame whole costs less than the
    copy-on-write faults of the pages a patch touches (measured: 0.13 CPU-s over 135 patched 720p
    frames)."""

    entry = _entry(uri, path, first, stop) if stop > first else None
    if entry is None:
        yield from read_video_frames(str(path), first, stop, threads=False)
        return
    cached = _cached(entry, first, stop, to_write)
    if cached is not None:
        yield from cached
        return
    yield from _storing(read_video_frames(str(path), first, stop, threads=False), entry, first, stop)
