"""Damaged recordings decoded the way FFmpeg's own tools decode them, and a record of what was lost.

A real upload can hold a packet the decoder refuses (a damaged last audio frame, a bit error) or end
early (an interrupted upload: the MP4 index promises packets the file no longer holds). FFmpeg's
command-line tool skips such a packet, keeps the timeline and goes on; PyAV's ``container.decode``
raises instead and would stop the whole prepare. ``decode_concealed`` is the one decoding loop the
engine uses: it feeds the decoder packet by packet, skips (and records) what it refuses, and ends at
the file's last readable packet. What was skipped is kept as ``Concealment`` records (stream, time,
count), which the prepared template and every recipient's QA record carry.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from loom import storage
from loom.errors import InputError

if TYPE_CHECKING:  # av is imported where a file is read: the records stay cheap to import
    import av

StreamKind = Literal["video", "audio"]


class Concealment(BaseModel):
    """One run of consecutive packets of one stream that could not be decoded (or were missing)."""

    stream: StreamKind
    time: float  # seconds on the stream's timeline where the run starts
    count: int  # packets (or, for a truncated file, frames the index promised) in the run
    kind: Literal["undecodable", "corrupt", "truncated"] = "undecodable"

    def line(self) -> str:
        if self.kind == "corrupt":
            return f"concealed: {self.count} damaged {self.stream} frame(s) at {self.time:.3f} s, repaired by the decoder"
        if self.kind == "truncated":
            return (f"concealed: the file ends early; {self.count} {self.stream} packet(s) after {self.time:.3f} s "
                    "are missing (used up to the last decodable one)")
        return f"concealed: {self.count} undecodable {self.stream} packet(s) at {self.time:.3f} s skipped, timing kept"


class ConcealmentLog:
    """Collects concealments of one stream; consecutive failures become one record."""

    def __init__(self, stream: StreamKind) -> None:
        self.stream = stream
        self.records: list[Concealment] = []
        self._open = False  # the last packet failed: the next failure extends its record

    def failed(self, time: float, kind: Literal["undecodable", "corrupt"] = "undecodable") -> None:
        if self._open and self.records and self.records[-1].kind == kind:
            self.records[-1].count += 1
        else:
            self.records.append(Concealment(stream=self.stream, time=round(time, 3), count=1, kind=kind))
            self._open = True

    def decoded(self) -> None:
        self._open = False

    def truncated(self, time: float, missing: int) -> None:
        if missing > 0:
            self.records.append(Concealment(stream=self.stream, time=round(time, 3), count=missing, kind="truncated"))


def _packet_time(packet: av.Packet, stream: av.stream.Stream) -> float:
    ts = packet.pts if packet.pts is not None else packet.dts
    start = stream.start_time or 0
    return float((ts - start) * stream.time_base) if ts is not None and stream.time_base else 0.0


def demux_readable(container: av.container.InputContainer, *streams: av.stream.Stream) -> Iterator[av.Packet]:
    """The container's packets of ``streams`` up to the first one the demuxer cannot read (a file
    cut short ends there instead of raising)."""
    import av

    packets = container.demux(*streams)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except (av.error.FFmpegError, OSError):
            return
        yield packet


def decode_concealed(
    container: av.container.InputContainer, stream: av.stream.Stream, log: ConcealmentLog | None = None
) -> Iterator[av.VideoFrame | av.AudioFrame]:
    """Every frame of ``stream`` the decoder can make, in output order, from the container's current
    position. A packet the decoder refuses is skipped (recorded in ``log``), as is the fact that it
    repaired a frame itself (the frame is kept, as FFmpeg keeps it); a file that ends early
    (a demuxer error, or fewer packets than the index promised) ends the frames there."""
    import av

    last_time = 0.0
    demuxed = 0
    for packet in demux_readable(container, stream):  # a demuxer error: the file ends there
        if packet.size == 0:  # the demuxer's end-of-stream marker: flushed below
            continue
        demuxed += 1
        last_time = _packet_time(packet, stream)
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            if log is not None:
                log.failed(last_time)
            continue
        if frames and log is not None:
            for frame in frames:  # FFmpeg's decoder concealed an error inside this frame itself
                if frame.is_corrupt:
                    log.failed(last_time, "corrupt")
                else:
                    log.decoded()
        yield from frames
    try:
        yield from stream.codec_context.decode(None)
    except av.error.FFmpegError:
        if log is not None:
            log.failed(last_time)
    listed = stream.frames if not stream.codec_context.name.startswith("pcm_") else 0  # PCM: counted in samples
    if log is not None and listed and demuxed < listed and container.format.name.startswith("mov"):
        # an MP4/MOV index lists every packet: fewer read means the file was cut short
        log.truncated(last_time, listed - demuxed)


class VideoScan(BaseModel):
    """What decoding a whole recording's video found: frames made, and what was concealed."""

    decoded_frames: int
    concealed: list[Concealment]


def scan_video(uri: str) -> VideoScan:
    """Decode the first video stream once (frames are dropped as they come) to learn what a render
    would have to conceal. A recording without one decodable frame is refused."""
    import av

    log = ConcealmentLog("video")
    count = 0
    with storage.local_path(uri) as path:
        try:
            container = av.open(str(path))
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise InputError("base_video_path", f"{uri} is not a readable video ({exc})", "check the file") from None
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for _ in decode_concealed(container, stream, log):
                count += 1
    if count == 0:
        raise InputError("base_video_path", f"{uri} has no decodable video frame", "check that the file plays, or upload it again")
    return VideoScan(decoded_frames=count, concealed=log.records)
