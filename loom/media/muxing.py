"""Frames into packets and packets into a file: the one encode-and-flush loop every module that
encodes uses, and the merge of a video and an audio packet stream by decode time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fractions import Fraction

import av
import numpy as np


def encoded_packets(encoder: Any, frames: Iterable[av.VideoFrame | av.AudioFrame]) -> Iterator[av.Packet]:
    """Every packet ``encoder`` (an output stream or a codec context) makes for ``frames``, then
    the packets its flush releases."""
    for frame in frames:
        yield from encoder.encode(frame)
    yield from encoder.encode(None)


def mux_frames(out: av.container.OutputContainer, stream: Any, frames: Iterable[av.VideoFrame | av.AudioFrame]) -> None:
    """Encode ``frames`` with ``stream``'s encoder and mux every packet, flush included."""
    for packet in encoded_packets(stream, frames):
        out.mux(packet)


def planar_frames(
    samples: np.ndarray, rate: int, layout: str, chunk: int, resampler: av.AudioResampler | None = None
) -> Iterator[av.AudioFrame]:
    """float32 ``(channels, n)`` samples as ``fltp`` frames of ``chunk`` samples (pts in samples),
    passed through ``resampler`` (and its flush) when the encoder wants another format."""
    for pos in range(0, samples.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, pos : pos + chunk]), format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = pos
        frame.time_base = Fraction(1, rate)
        if resampler is None:
            yield frame
        else:
            yield from resampler.resample(frame)
    if resampler is not None:
        yield from resampler.resample(None)


def interleave(video: Iterator, audio: Iterator) -> Iterator:
    """Merge two packet streams by decode time (each already in order, each on one time base)."""
    scale: dict[int, float] = {}

    def key(packet) -> float:  # noqa: ANN001
        ts = packet.dts if packet.dts is not None else packet.pts
        index = packet.stream.index
        if index not in scale:
            scale[index] = float(packet.time_base)
        return (ts or 0) * scale[index]

    v, a = next(video, None), next(audio, None)
    kv = key(v) if v is not None else 0.0
    ka = key(a) if a is not None else 0.0
    while v is not None or a is not None:
        if a is None or (v is not None and kv <= ka):
            yield v
            v = next(video, None)
            kv = key(v) if v is not None else 0.0
        else:
            yield a
            a = next(audio, None)
            ka = key(a) if a is not None else 0.0
