"""What a recording is: streams, codecs, frame rate, rotation, duration and keyframes (PyAV)."""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from loom import storage
from loom.errors import InputError

if TYPE_CHECKING:  # av is imported where a video is opened: importing the models stays cheap
    import av


class VideoInfo(BaseModel):
    """A probed recording. Times in seconds; frame rate as a fraction string like ``30000/1001``."""

    uri: str
    container: str
    codec: str
    profile: str | None = None
    level: int | None = None
    pix_fmt: str
    width: int
    height: int
    fps: str = Field(description="average frame rate as 'num/den'")
    time_base: str
    frame_count: int
    duration: float
    constant_frame_rate: bool = True
    rotation: int = 0
    sample_aspect: str = "1/1"
    bit_rate: int | None = None
    color_range: str | None = None
    color_space: str | None = None
    color_primaries: str | None = None
    color_trc: str | None = None
    has_b_frames: bool = False
    keyframes: list[int] = Field(default_factory=list, description="indices of keyframes in display order")
    has_audio: bool = False
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None

    @property
    def frame_rate(self) -> Fraction:
        return Fraction(self.fps)

    def frame_span(self, start: float, end: float) -> tuple[int, int]:
        """Frames [first, stop) shown during [start, end) seconds."""
        return frame_span(start, end, self.frame_rate, self.frame_count)


def frame_span(start: float, end: float, fps: Fraction, frame_count: int | None = None) -> tuple[int, int]:
    first = max(0, round(start * fps))
    stop = max(first + 1, round(end * fps))
    if frame_count is not None:
        stop = min(stop, frame_count)
        first = min(first, max(stop - 1, 0))
    return int(first), int(stop)


def _rotation(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """Display rotation in degrees (counter-clockwise), read from the first decoded frame's display matrix."""
    import av

    tag = stream.metadata.get("rotate")
    if tag and tag.lstrip("-").isdigit():
        return int(tag) % 360
    try:
        container.seek(0, stream=stream)
        for frame in container.decode(stream):
            return int(round(float(getattr(frame, "rotation", 0) or 0))) % 360
    except (av.error.FFmpegError, ValueError, TypeError):
        return 0
    return 0


def probe_video(uri: str) -> VideoInfo:
    """Probe a recording. Reads every packet header once (no decoding) for keyframes and timing."""
    from loom.fetch import FetchError

    try:
        return _probe(uri)
    except FetchError as exc:  # a remote recording the safe fetcher refused or could not read
        raise InputError("base_video_path", f"cannot read {uri}: {exc.problem}", exc.fix) from None


def _probe(uri: str) -> VideoInfo:
    import av

    from loom.media.concealment import demux_readable

    with storage.local_path(uri) as path:
        try:
            container = av.open(str(path))
        except (av.error.InvalidDataError, av.error.FileNotFoundError, OSError, ValueError) as exc:
            raise InputError("base_video_path", f"{uri} is not a readable video ({exc})", "check the file") from None
        with container:
            if not container.streams.video:
                raise InputError("base_video_path", f"{uri} has no video stream", "use a video file")
            vs = container.streams.video[0]
            cc = vs.codec_context
            audio = container.streams.audio[0] if container.streams.audio else None
            pts_list: list[int] = []
            key_pts: list[int] = []
            for packet in demux_readable(container, vs):  # a file cut short: up to its end
                if packet.pts is None and packet.dts is None:
                    continue
                if packet.size == 0:
                    continue
                pts = packet.pts if packet.pts is not None else packet.dts
                pts_list.append(pts)
                if packet.is_keyframe:
                    key_pts.append(pts)
            if not pts_list:
                raise InputError("base_video_path", f"{uri} holds no video frames", "check the file")
            order = sorted(pts_list)
            index_of = {p: i for i, p in enumerate(order)}
            tb = vs.time_base
            rate = vs.average_rate or vs.guessed_rate or Fraction(30)
            deltas = [b - a for a, b in zip(order, order[1:])]
            cfr = True
            if deltas:
                med = sorted(deltas)[len(deltas) // 2]
                cfr = all(abs(d - med) <= max(1, med * 0.02) for d in deltas)
                if med > 0 and cfr:
                    rate = Fraction(1) / (Fraction(med) * tb)
                    rate = Fraction(rate).limit_denominator(1001)
            n = len(order)
            duration = float(n / rate) if cfr else float((order[-1] - order[0]) * tb + 1 / rate)
            return VideoInfo(
                uri=str(uri),
                container=container.format.name,
                codec=cc.name,
                profile=cc.profile,
                level=getattr(cc, "level", None) if hasattr(cc, "level") else None,
                pix_fmt=cc.pix_fmt or "yuv420p",
                width=cc.width,
                height=cc.height,
                fps=f"{rate.numerator}/{rate.denominator}",
                time_base=f"{tb.numerator}/{tb.denominator}",
                frame_count=n,
                duration=duration,
                constant_frame_rate=cfr,
                rotation=_rotation(container, vs),
                sample_aspect=str(vs.sample_aspect_ratio or "1/1"),
                bit_rate=cc.bit_rate or container.bit_rate,
                color_range=str(cc.color_range) if getattr(cc, "color_range", None) is not None else None,
                color_space=str(getattr(cc, "colorspace", None)) if getattr(cc, "colorspace", None) is not None else None,
                color_primaries=str(getattr(cc, "color_primaries", None)) if getattr(cc, "color_primaries", None) is not None else None,
                color_trc=str(getattr(cc, "color_trc", None)) if getattr(cc, "color_trc", None) is not None else None,
                has_b_frames=bool(getattr(cc, "has_b_frames", False)),
                keyframes=sorted(index_of[p] for p in key_pts),
                has_audio=audio is not None,
                audio_codec=audio.codec_context.name if audio else None,
                sample_rate=audio.codec_context.sample_rate if audio else None,
                channels=audio.codec_context.channels if audio else None,
            )
