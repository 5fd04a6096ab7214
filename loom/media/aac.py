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
from fractions import Fraction

import numpy as np

from loom import storage
from loom.edits import AudioInsert
from loom.media.audio_mix import Mixer, channel_layout, open_pcm

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
    import av

    layout = channel_layout(mixer.channels)
    for pos in range(lo, hi, FRAME * 64):
        block = mixer.read(pos, min(hi, pos + FRAME * 64))
        for k in range(0, block.shape[0], FRAME):
            piece = np.ascontiguousarray(block[k : k + FRAME].T)
            frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout=layout)
            frame.sample_rate = mixer.rate
            frame.pts = pos + k
            frame.time_base = Fraction(1, mixer.rate)
            yield from stream.encode(frame)
    yield from stream.encode(None)


def encode_aac_track(audio_uri: str, out_uri: str) -> str:
    """The template's AAC track (``.m4a``): the original WAV encoded once."""
    import av

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
    import av

    stack = contextlib.ExitStack()
    pcm, rate = stack.enter_context(open_pcm(audio_uri))
    mixer = Mixer(pcm, rate, inserts)
    track = aac_track_uri(audio_uri)
    source = None
    if storage.exists(track):
        path = stack.enter_context(storage.local_path(track, suffix=".m4a"))
        source = stack.enter_context(av.open(str(path)))
        ain = source.streams.audio[0]
        if ain.time_base != Fraction(1, rate) or ain.codec_context.channels != mixer.channels:
            source = None  # not this WAV's track: encode the whole mix instead
    if source is None:
        stream = add_aac_stream(out, rate, mixer.channels)

        def encode_all() -> Iterator:
            with stack:
                yield from encode_range(stream, mixer, 0, mixer.total)

        return encode_all()

    aout = out.add_stream_from_template(ain)
    aout.time_base = ain.time_base
    last_pts = ain.duration if ain.duration else (mixer.total // FRAME + 1) * FRAME
    regions = _regions(mixer.spans(), int(last_pts))

    def reencoded(a: int, b: int) -> list:
        """Packets [a, b) of a fresh encode of the mix, started early enough to settle."""
        encoder = av.CodecContext.create("aac", "w")
        encoder.sample_rate, encoder.layout, encoder.format = rate, channel_layout(mixer.channels), "fltp"
        encoder.bit_rate = AAC_BITRATE_PER_CHANNEL * min(mixer.channels, 6)
        encoder.time_base = Fraction(1, rate)
        start = max(0, a - WARMUP_FRAMES * FRAME)
        end = min(mixer.total, b + WARMUP_FRAMES * FRAME)
        return [p for p in encode_range(encoder, mixer, start, end) if a <= p.pts < b]

    def packets() -> Iterator:
        with stack:
            pending, replacing = list(regions), None
            for packet in source.demux(ain):
                if packet.pts is None or packet.size == 0:
                    continue
                if pending and packet.pts >= pending[0][0]:
                    replacing = pending.pop(0)
                    for new in reencoded(*replacing):
                        new.time_base = Fraction(1, rate)
                        new.stream = aout
                        yield new
                if replacing and replacing[0] <= packet.pts < replacing[1]:
                    continue
                packet.stream = aout
                yield packet

    return packets()
