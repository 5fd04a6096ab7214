"""What a person scrubbing a recording sees: a frame at any time at a reduced size, and the audio's
waveform. Both are cached on disk per recording (by content), so scrubbing back and forth decodes
each frame once.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from loom import storage
from loom.errors import InputError

if TYPE_CHECKING:
    from loom.media.probe import VideoInfo

MAX_SCRUB_WIDTH = 960


def recording_key(uri: str) -> str:
    """A short name for a recording's content (its digest), for cache folders; a local file's is
    remembered per (path, size, mtime) for this process."""
    import os

    if storage.is_remote(uri):
        return storage.file_digest(uri)[:20]
    stat = os.stat(uri)
    return _local_key(os.path.realpath(uri), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _local_key(path: str, size: int, mtime_ns: int) -> str:
    return storage.file_digest(path)[:20]


def _cache_dir(uri: str) -> Path:
    from loom.settings import get_settings

    folder = Path(get_settings().local_cache_dir()) / "scrub" / recording_key(uri)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def video_info(uri: str) -> VideoInfo:
    """The recording's probe, cached beside its frames."""
    from loom.media.probe import VideoInfo, probe_video

    cached = _cache_dir(uri) / "probe.json"
    if cached.is_file():
        return VideoInfo.model_validate_json(cached.read_text())
    info = probe_video(uri)
    cached.write_text(info.model_dump_json())
    return info


def frame_index(uri: str, seconds: float) -> tuple[int, float, int]:
    """(frame index shown at ``seconds``, frames per second, frame count) of the recording."""
    info = video_info(uri)
    fps = float(info.frame_rate)
    index = min(max(int(seconds * fps + 1e-6), 0), info.frame_count - 1)
    return index, fps, info.frame_count


def frame_jpeg(uri: str, seconds: float, width: int = 640) -> bytes:
    """The frame shown at ``seconds``, ``width`` pixels wide (aspect kept), as JPEG; cached."""
    import av
    import cv2

    width = max(16, min(int(width), MAX_SCRUB_WIDTH))
    index, fps, _count = frame_index(uri, seconds)
    cached = _cache_dir(uri) / f"{index}-{width}.jpg"
    if cached.is_file():
        return cached.read_bytes()
    with storage.local_path(uri) as path, av.open(str(path)) as container:
        stream = container.streams.video[0]
        target = index / fps
        # seek to the keyframe before the target, then decode up to the frame shown at that time
        container.seek(int(max(target - 0.5, 0) / stream.time_base), stream=stream, backward=True, any_frame=False)
        picture = None
        for frame in container.decode(stream):
            t = frame.time if frame.time is not None else 0.0
            picture = frame
            if t + 0.5 / fps >= target:
                break
        if picture is None:
            raise InputError("t", f"no frame at {seconds:.3f}s", "pick a time inside the recording")
        rgb = picture.to_ndarray(format="rgb24")
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    data = encoded.tobytes()
    cached.write_bytes(data)
    return data


def waveform(uri: str, bins: int = 800) -> dict[str, object]:
    """Peaks of the audio in ``bins`` slices: ``{"duration", "peaks": [[min, max], ...]}``; cached."""
    import av

    bins = max(10, min(int(bins), 4000))
    cached = _cache_dir(uri) / f"wave-{bins}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    duration = video_info(uri).duration
    peaks = [[0.0, 0.0] for _ in range(bins)]
    with storage.local_path(uri) as path, av.open(str(path)) as container:
        if container.streams.audio:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=8000)
            chunks = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            samples = np.concatenate(chunks) if chunks else np.zeros(1, np.float32)
            edges = np.linspace(0, samples.size, bins + 1).astype(int)
            for i in range(bins):
                piece = samples[edges[i] : max(edges[i + 1], edges[i] + 1)]
                if piece.size:
                    peaks[i] = [round(float(piece.min()), 4), round(float(piece.max()), 4)]
    result = {"duration": duration, "peaks": peaks}
    cached.write_text(json.dumps(result))
    return result

