"""Small test recordings made on the fly with PyAV: moving content and a tone, any codec/container.

Every frame differs from its neighbours (a moving box, a scrolling gradient and a frame-number
bar code), so a dropped, duplicated or shifted frame shows up in a pixel comparison. The audio is
a tone with a slow amplitude envelope, so a shifted or replaced window shows up in a correlation.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from loom.media.muxing import mux_frames, planar_frames

# Audio codec per container when the caller does not name one.
_DEFAULT_AUDIO = {".mp4": "aac", ".m4v": "aac", ".mov": "aac", ".mkv": "aac", ".avi": "ac3", ".webm": "libopus"}
_DEFAULT_PIX = {"libx264": "yuv420p", "mpeg4": "yuv420p", "libx265": "yuv420p", "libvpx-vp9": "yuv420p",
                "prores_ks": "yuv422p10le", "libsvtav1": "yuv420p"}


def clip_frame(index: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """The RGB picture of frame ``index`` (deterministic; the same for every codec)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = (xx * 255.0 / max(w - 1, 1) + index * 3 + seed * 17) % 256
    g = (yy * 255.0 / max(h - 1, 1) + index * 2) % 256
    b = 128 + 60 * np.sin((xx + yy) / 23.0 + index * 0.3)
    frame = np.stack([r, g, b], axis=-1).astype(np.uint8)
    box = max(8, min(w, h) // 6)
    x0 = int((index * 7) % max(w - box, 1))
    y0 = int((h - box) / 2 + (h - box) / 3 * np.sin(index / 9.0))
    frame[y0 : y0 + box, x0 : x0 + box] = (250, 250, 40)
    # frame number as a 12-bit bar code along the bottom rows
    bar_w = max(2, w // 12)
    bar_h = max(4, h // 20)
    for bit in range(12):
        on = (index >> bit) & 1
        frame[h - bar_h :, bit * bar_w : (bit + 1) * bar_w] = 235 if on else 20
    return frame


def clip_audio(seconds: float, sample_rate: int = 48000, channels: int = 2, tone_hz: float = 440.0) -> np.ndarray:
    """Float32 ``(channels, samples)`` tone with a slow envelope (and a second tone per channel)."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    env = 0.55 + 0.35 * np.sin(2 * np.pi * 0.7 * t)
    out = []
    for c in range(channels):
        sig = env * (0.5 * np.sin(2 * np.pi * tone_hz * t) + 0.2 * np.sin(2 * np.pi * (tone_hz * 1.5 + 110 * c) * t))
        out.append(sig)
    return (np.asarray(out) * 0.8).astype(np.float32)


def make_clip(
    path: str | Path,
    seconds: float = 2.0,
    fps: int | Fraction = 25,
    size: tuple[int, int] = (320, 240),
    codec: str = "libx264",
    audio: bool = True,
    audio_codec: str | None = None,
    sample_rate: int = 48000,
    channels: int = 2,
    gop: int | None = None,
    bframes: int | None = None,
    pix_fmt: str | None = None,
    vfr: bool = False,
    rotation: int = 0,
    crf: int = 18,
    seed: int = 0,
    options: dict[str, str] | None = None,
) -> Path:
    """Write a test recording to ``path`` (container chosen by its suffix) and return the path.

    ``vfr`` alternates frame durations (2/3 and 4/3 of the nominal one) on a 1/1000 time base;
    ``rotation`` adds display-rotation metadata (degrees, counter-clockwise); ``gop`` sets the
    keyframe interval (default: 2 s); ``bframes`` the number of B-frames (x264 default if None).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fps = Fraction(fps)
    n_frames = int(round(seconds * fps))
    w, h = size
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height = w, h
        odd = w % 2 or h % 2
        vs.pix_fmt = pix_fmt or ("yuv444p" if odd and codec == "libx264" else _DEFAULT_PIX.get(codec, "yuv420p"))
        if rotation:
            vs.set_display_rotation(rotation)
        vs.gop_size = gop or int(round(fps * 2))
        opts: dict[str, str] = {}
        if codec == "libx264":
            opts = {"crf": str(crf), "preset": "veryfast"}
            if bframes is not None:
                opts["bf"] = str(bframes)
        elif codec == "libx265":
            opts = {"crf": str(crf + 4), "preset": "ultrafast", "x265-params": "log-level=error"}
        elif codec == "libvpx-vp9":
            opts = {"crf": "30", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        elif codec == "libsvtav1":
            opts = {"crf": "35", "preset": "12"}
        if codec == "mpeg4":
            vs.bit_rate = 3_000_000
        opts.update(options or {})
        vs.options = opts
        if vfr:
            vs.codec_context.time_base = Fraction(1, 1000)
        astream = None
        if audio:
            acodec = audio_codec or _DEFAULT_AUDIO.get(path.suffix.lower(), "aac")
            astream = out.add_stream(acodec, rate=sample_rate)
            astream.layout = "stereo" if channels == 2 else ("mono" if channels == 1 else f"{channels}c")
        pts_ms = 0

        def frames() -> Iterator[av.VideoFrame]:
            nonlocal pts_ms
            for i in range(n_frames):
                frame = av.VideoFrame.from_ndarray(clip_frame(i, size, seed), format="rgb24")
                if vfr:
                    frame.pts = pts_ms
                    frame.time_base = Fraction(1, 1000)
                    step = 1000 / float(fps)
                    pts_ms += int(round(step * (2 / 3 if i % 2 == 0 else 4 / 3)))
                else:
                    frame.pts = i
                    frame.time_base = 1 / fps
                yield frame

        mux_frames(out, vs, frames())
        if astream is not None:
            total = seconds if not vfr else pts_ms / 1000.0
            _write_audio(out, astream, clip_audio(total, sample_rate, channels), sample_rate)
    return path


def _write_audio(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, samples: np.ndarray, rate: int) -> None:
    ctx = stream.codec_context
    fmt = ctx.format.name if ctx.format else "fltp"
    chunk = ctx.frame_size or 1024
    layout = stream.layout.name
    planar = np.ascontiguousarray(samples)
    resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)
    mux_frames(out, stream, planar_frames(planar, rate, layout, chunk, resampler))


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: int | Fraction = 25, crf: int = 18,
              preset: str = "veryfast") -> Path:
    """RGB frames (any iterable, read once) as an H.264 MP4 without audio."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.options = {"crf": str(crf), "preset": preset}

        def video() -> Iterator[av.VideoFrame]:
            for i, rgb in enumerate(frames):
                if i == 0:
                    stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], "yuv420p"
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts, frame.time_base = i, 1 / Fraction(fps)
                yield frame

        mux_frames(out, stream, video())
    return path


def decode_rgb(path: str | Path) -> list[np.ndarray]:
    """Every frame of a (small) clip as RGB arrays, in display order."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def decode_audio(path: str | Path, rate: int = 48000) -> np.ndarray:
    """The audio of a clip as float32 ``(channels, samples)`` at ``rate``."""
    with av.open(str(path)) as c:
        layout = c.streams.audio[0].layout.name
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        parts = []
        for frame in c.decode(audio=0):
            for f in resampler.resample(frame):
                parts.append(f.to_ndarray())
        for f in resampler.resample(None):
            parts.append(f.to_ndarray())
    return np.concatenate(parts, axis=1) if parts else np.zeros((1, 0), np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="loom-media-"))
