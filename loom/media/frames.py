"""Decode only the frames asked for, by index, from the keyframe before them."""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import TypeVar

import av
import numpy as np

from loom import storage
from loom.media.concealment import decode_concealed


def read_frames(uri: str, first: int, stop: int, fmt: str = "rgb24") -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, frame)`` for display-order frames ``first <= index < stop``.

    Seeks to the keyframe at or before ``first`` and decodes forward, so the cost follows the
    span, not the recording. Frames are ``(h, w, 3)`` uint8 in ``fmt`` (rgb24 or bgr24).
    Assumes a constant frame rate (prepared templates guarantee it).
    """
    for index, frame in read_video_frames(uri, first, stop):
        yield index, frame.to_ndarray(format=fmt)


def read_video_frames(
    uri: str, first: int, stop: int, threads: bool = True, keep: bool = True
) -> Iterator[tuple[int, av.VideoFrame]]:
    """Like ``read_frames`` but yields the decoded ``av.VideoFrame`` (no pixel conversion).

    ``threads=False`` decodes on one thread: less CPU in all, for callers that run the decoder
    beside another busy codec (the renderer's span encoder). ``keep``: a remote video is fetched
    into this machine's cache for the next reader (``storage.kept_local_path``; the working video
    is read again by every recipient); False for a one-off read (an output).
    """
    if stop <= first:
        return
    fetch = storage.kept_local_path if keep else storage.local_path
    with fetch(uri) as path, av.open(str(path)) as container:
        stream = container.streams.video[0]
        if threads:
            stream.thread_type = "AUTO"
        else:
            stream.thread_count = 1
        rate = Fraction(stream.average_rate or stream.guessed_rate)
        tb = stream.time_base
        start_pts = stream.start_time or 0
        target_pts = start_pts + int(Fraction(first) / rate / tb)
        # MP4 seeks by decode time: with B-frames a keyframe's dts is below its pts, so the seek
        # may land after ``first``; step back a second at a time until it does not.
        back, seek_pts = 0, start_pts
        while True:
            if first > 0:
                seek_pts = max(start_pts, target_pts - int(back / tb))
                container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
            frames = decode_concealed(container, stream)
            head = next((f for f in frames if f.pts is not None), None)
            if head is None:
                return
            head_index = round((head.pts - start_pts) * tb * rate)
            if head_index <= first or first == 0 or seek_pts == start_pts:
                break
            back += 1
        for frame in itertools.chain([head], frames):
            if frame.pts is None:
                continue
            index = round((frame.pts - start_pts) * tb * rate)
            if index < first:
                continue
            if index >= stop:
                break
            yield index, frame


T = TypeVar("T")
_END = object()


def prefetched(items: Iterable[T], depth: int = 8) -> Iterator[T]:
    """Produce ``items`` on a thread, ``depth`` ahead, so decoding overlaps the consumer's work
    (FFmpeg, encoders and the GPU release the GIL). Errors surface in the consumer; stopping early
    stops the producer."""
    box: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(exc)

    thread = threading.Thread(target=produce, name="loom-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = box.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
