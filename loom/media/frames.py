"""Decode only the frames asked for, by index, from the keyframe before them."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np

from loom import storage


def read_frames(uri: str, first: int, stop: int, fmt: str = "rgb24") -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, frame)`` for display-order frames ``first <= index < stop``.

    Seeks to the keyframe at or before ``first`` and decodes forward, so the cost follows the
    span, not the recording. Frames are ``(h, w, 3)`` uint8 in ``fmt`` (rgb24 or bgr24).
    Assumes a constant frame rate (prepared templates guarantee it).
    """
    if stop <= first:
        return
    with storage.local_path(uri) as path, av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = Fraction(stream.average_rate or stream.guessed_rate)
        tb = stream.time_base
        start_pts = stream.start_time or 0
        target_pts = start_pts + int(Fraction(first) / rate / tb)
        if first > 0:
            container.seek(max(target_pts, start_pts), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            index = round((frame.pts - start_pts) * tb * rate)
            if index < first:
                continue
            if index >= stop:
                break
            yield index, frame.to_ndarray(format=fmt)
