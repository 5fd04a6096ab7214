"""The recording's AAC track: encoded once per template; a recipient re-encodes only around its voice windows.

Every output sample goes through one AAC encode: the template's for the untouched audio, the
recipient's for the windows. AAC frames overlap (each 1024-sample packet's MDCT spans 2048
samples), so a recipient's encoder starts a few frames before a window on the same input (its
first packets are discarded while its state settles) and its packets replace the template's from
two frames before the window to two frames after it; at each join both encodes describe the same
original samples, so the decoder's overlap-add joins them without a click. Without a template
track (older prepared templates) the whole mix is encoded once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction

import av
import numpy as np

from loom import storage
from loom.edits import AudioInsert
from loom.media.audio_mix import Mixer, channel_layout, open_pcm
from loom.media.muxing import encoded_packets

FRAME = 1024  # samples per AAC-LC frame
AAC_BITRATE_PER_CHANNEL = 96_000
WARMUP_FRAMES = 4  # re-encode packets discarded before the first one kept
MARGIN_FRAMES = 2  # re-encoded packets kept on each side of a window


def aac_track_uri(audio_uri: str) -> str:
    """Where prepare keeps the template's AAC track: beside the WAV, as ``.m4a``."""
    return (audio_uri[:-4] if audio_uri.endswith(".wav") else audio_uri) + ".m4a"


def add_aac_stream(out, rate: int, channels: int):  # noqa: ANN001, ANN201
    stream = out.add_stream("aac", rate=rate, layout=channel_layout(channels))
    stream.bit_rate = AAC_BITRATE_PER_CHANNEL * min(channels, 6)
    return stream


def encode_range(stream, mixer: Mixer, lo: int, hi: int) -> Iterator:  # noqa: ANN001
    """Encode mixed samples [lo, hi) (``lo`` on the 1024 grid) and flush; packet pts in samples."""

    layout = channel_layout(mixer.channels)

    def frames() -> Iterator[av.AudioFrame]:
        for pos in range(lo, hi, FRAME * 64):
            block = mixer.read(pos, min(hi, pos + FRAME * 64))
            for k in range(0, block.shape[0], FRAME):
                piece = np.ascontiguousarray(block[k : k + FRAME].T)
                frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout=layout)
                frame.sample_rate = mixer.rate
                frame.pts = pos + k
                frame.time_base = Fraction(1, mixer.rate)
                yield frame

    yield from encoded_packets(stream, frames())


def encode_aac_track(audio_uri: str, out_uri: str) -> str:
    """The template's AAC track (``.m4a``): the original WAV encoded once."""

    with open_pcm(audio_uri) as (pcm, rate), storage.staged_output(out_uri, suffix=".m4a") as target:
        mixer = Mixer(pcm, rate, [])
        with av.open(str(target), "w", format="mp4") as out:
            stream = add_aac_stream(out, rate, mixer.channels)
            for packet in encode_range(stream, mixer, 0, mixer.total):
                out.mux(packet)
    return out_uri


def _regions(spans: list[tuple[int, int]], last_pts: int) -> list[tuple[int, int]]:
    """Packet pts ranges [a, b) to re-encode for sample spans, on the 1024 grid, merged."""
    out: list[tuple[int, int]] = []
    for s0, s1 in sorted(spans):
        a = max(-FRAME, (s0 // FRAME - MARGIN_FRAMES) * FRAME)
        b = min(last_pts + FRAME, (-(-s1 // FRAME) + MARGIN_FRAMES) * FRAME)
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def recipient_audio(out, audio_uri: str, inserts: list[AudioInsert]) -> Iterator:  # noqa: ANN001
    """Add the recipient's AAC stream to ``out`` now; return an iterator of its packets in order."""
    return RecipientAudio(audio_uri, inserts).attach(out)


def resolved(inserts: list[AudioInsert] | Future) -> list[AudioInsert]:
    """The voice inserts, waiting for them if they are still being spoken."""
    return inserts.result() if isinstance(inserts, Future) else inserts


class RecipientAudio:
    """The recipient's AAC track. Made before the video: the voice windows re-encode on a thread
    at once (PyAV releases the GIL while encoding), so they are ready by the time the muxer wants
    them instead of adding to the render after the video spans are encoded. ``inserts`` may be a
    ``Future`` of them: the lines are then still being spoken while the video spans encode, and
    only the audio waits for them."""

    def __init__(self, audio_uri: str, inserts: list[AudioInsert] | Future) -> None:
        self._stack = contextlib.ExitStack()
        pcm, self.rate = self._stack.enter_context(open_pcm(audio_uri))
        self.pcm = pcm
        self.source = None
        self._pool = None
        self._inserts = inserts
        track = aac_track_uri(audio_uri)
        if storage.exists(track):
            path = self._stack.enter_context(storage.kept_local_path(track, suffix=".m4a"))
            source = self._stack.enter_context(av.open(str(path)))
            ain = source.streams.audio[0]
            if ain.time_base == Fraction(1, self.rate) and ain.codec_context.channels == pcm.shape[1]:
                self.source, self.ain = source, ain
        if self.source is None:
            return  # no template track: the whole mix is encoded while muxing

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-aac")
        self._windows = self._pool.submit(self._encode_windows)

    def _encode_windows(self) -> list[tuple[tuple[int, int], list]]:
        """Each packet range to replace, with its re-encoded packets."""
        mixer = Mixer(self.pcm, self.rate, resolved(self._inserts))
        last_pts = self.ain.duration if self.ain.duration else (mixer.total // FRAME + 1) * FRAME
        return [((a, b), self._reencoded(mixer, a, b)) for a, b in _regions(mixer.spans(), int(last_pts))]

    def _reencoded(self, mixer: Mixer, a: int, b: int) -> list:
        """Packets [a, b) of a fresh encode of the mix, started early enough to settle."""

        encoder = av.CodecContext.create("aac", "w")
        encoder.sample_rate, encoder.layout, encoder.format = self.rate, channel_layout(mixer.channels), "fltp"
        encoder.bit_rate = AAC_BITRATE_PER_CHANNEL * min(mixer.channels, 6)
        encoder.time_base = Fraction(1, self.rate)
        start = max(0, a - WARMUP_FRAMES * FRAME)
        end = min(mixer.total, b + WARMUP_FRAMES * FRAME)
        return [p for p in encode_range(encoder, mixer, start, end) if a <= p.pts < b]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._stack.close()

    def attach(self, out) -> Iterator:  # noqa: ANN001
        """Add the AAC stream to ``out``; return an iterator of its packets in order (closes when done)."""
        if self.source is None:
            stream = add_aac_stream(out, self.rate, self.pcm.shape[1])

            def encode_all() -> Iterator:
                try:
                    mixer = Mixer(self.pcm, self.rate, resolved(self._inserts))
                    yield from encode_range(stream, mixer, 0, mixer.total)
                finally:
                    self.close()

            return encode_all()

        aout = out.add_stream_from_template(self.ain)
        aout.time_base = self.ain.time_base

        def packets() -> Iterator:
            try:
                pending = self._windows.result()
                replacing = None
                for packet in self.source.demux(self.ain):
                    if packet.pts is None or packet.size == 0:
                        continue
                    if pending and packet.pts >= pending[0][0][0]:
                        replacing, new_packets = pending.pop(0)
                        for new in new_packets:
                            new.time_base = Fraction(1, self.rate)
                            new.stream = aout
                            yield new
                    if replacing and replacing[0] <= packet.pts < replacing[1]:
                        continue
                    packet.stream = aout
                    yield packet
            finally:
                self.close()

        return packets()
