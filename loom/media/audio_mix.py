"""The recording's audio as PCM, and one recipient's mix: original samples with voice windows replaced.

The original track is decoded once per template to a 16-bit WAV on the video's timeline (sample 0
is shown with frame 0). A recipient's mix streams that WAV in chunks, replaces each voice window
with its insert (equal-power crossfades inside the window's edges, so every sample outside the
windows is the original's) and hands float chunks to one AAC encode.
"""

from __future__ import annotations

import contextlib
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from loom import storage
from loom.edits import AudioInsert
from loom.media.concealment import Concealment, ConcealmentLog, decode_concealed

CROSSFADE_SECONDS = 0.02
_AAC_RATES = (44100, 48000)
_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def channel_layout(channels: int) -> str:
    """The layout a WAV of ``channels`` channels is read and encoded with (the WAV stores no layout)."""
    return _LAYOUTS.get(channels, "stereo")


@dataclass
class PcmTrack:
    uri: str
    sample_rate: int
    channels: int
    samples: int
    concealed: list[Concealment] = field(default_factory=list)


class _WavWriter:
    """Streams int16 PCM to a WAV file."""

    def __init__(self, path: Path, rate: int, channels: int) -> None:
        self.handle = wave.open(str(path), "wb")
        self.handle.setnchannels(channels)
        self.handle.setsampwidth(2)
        self.handle.setframerate(rate)
        self.samples = 0

    def write(self, block: np.ndarray) -> None:
        """``block``: (samples, channels) int16."""
        self.handle.writeframes(np.ascontiguousarray(block, dtype="<i2").tobytes())
        self.samples += block.shape[0]

    def close(self) -> None:
        self.handle.close()


def extract_audio(video_uri: str, out_uri: str, video_start: float, duration: float) -> PcmTrack:
    """Decode the first audio track once to a WAV aligned to the video (silence if there is none).

    Keeps the channel count; keeps 44.1/48 kHz, resamples any other rate to 48 kHz. Audio that
    starts after the first video frame is padded with silence; audio before it is dropped. A packet
    the decoder refuses becomes silence of its length (the timeline is kept) and a track that ends
    early is used up to its last decodable sample; both are listed in the track's ``concealed``.
    """

    with storage.local_path(video_uri) as path, av.open(str(path)) as container:
        if not container.streams.audio:
            return silent_wav(out_uri, duration)
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate if stream.codec_context.sample_rate in _AAC_RATES else 48000
        channels = stream.codec_context.channels
        channels = channels if channels in _LAYOUTS else 2
        layout = channel_layout(channels)
        resampler = av.AudioResampler(format="s16", layout=layout, rate=rate)
        log = ConcealmentLog("audio")
        with storage.staged_output(out_uri, suffix=".wav") as target:
            writer = _WavWriter(target, rate, channels)
            skip = 0
            origin: float | None = None  # the track's time of WAV sample 0
            try:
                for frame in decode_concealed(container, stream, log):
                    if origin is None:
                        origin = video_start
                        offset = (frame.time if frame.time is not None else video_start) - video_start
                        if offset > 0:
                            writer.write(np.zeros((round(offset * rate), channels), np.int16))
                        else:
                            skip = round(-offset * rate)
                    elif log.records and frame.time is not None:
                        # after a skipped packet: silence up to where this frame belongs
                        gap = round((frame.time - origin) * rate) - (writer.samples - skip)
                        if gap > round(0.002 * rate):
                            writer.write(np.zeros((gap, channels), np.int16))
                    for out in resampler.resample(frame):
                        block = out.to_ndarray().reshape(-1, channels)
                        if skip:
                            cut = min(skip, block.shape[0])
                            block, skip = block[cut:], skip - cut
                        writer.write(block)
                for out in resampler.resample(None):
                    writer.write(out.to_ndarray().reshape(-1, channels))
            finally:
                writer.close()
            samples = writer.samples
    return PcmTrack(uri=out_uri, sample_rate=rate, channels=channels, samples=samples, concealed=log.records)


def silent_wav(out_uri: str, seconds: float, rate: int = 48000, channels: int = 2) -> PcmTrack:
    """A WAV of digital silence (for recordings without an audio track)."""
    total = max(0, round(seconds * rate))
    with storage.staged_output(out_uri, suffix=".wav") as target:
        writer = _WavWriter(target, rate, channels)
        block = np.zeros((rate, channels), np.int16)
        left = total
        while left > 0:
            writer.write(block[: min(left, rate)])
            left -= min(left, rate)
        writer.close()
    return PcmTrack(uri=out_uri, sample_rate=rate, channels=channels, samples=total)


def _wav_layout(path: Path) -> tuple[int, int, int, int]:
    """(sample rate, channels, data offset, data bytes) of a 16-bit PCM WAV (RIFF chunks walked)."""
    with open(path, "rb") as handle:
        header = handle.read(12)
        if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            raise ValueError(f"{path} is not a WAV file")
        rate = channels = bits = None
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                raise ValueError(f"{path} has no data chunk")
            name, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if name == b"fmt ":
                fmt = handle.read(size + (size & 1))
                channels = int.from_bytes(fmt[2:4], "little")
                rate = int.from_bytes(fmt[4:8], "little")
                bits = int.from_bytes(fmt[14:16], "little")
            elif name == b"data":
                if bits != 16 or not rate:
                    raise ValueError(f"{path} is not 16-bit PCM")
                size = min(size, path.stat().st_size - handle.tell())
                return rate, channels, handle.tell(), size
            else:
                handle.seek(size + (size & 1), 1)


@contextlib.contextmanager
def open_pcm(uri: str) -> Iterator[tuple[np.ndarray, int]]:
    """The WAV as a memory-mapped ``(samples, channels)`` int16 array, and its rate (a prepared
    template's audio: a remote one is fetched once per machine, ``storage.kept_local_path``)."""
    with storage.kept_local_path(uri, suffix=".wav") as path:
        rate, channels, offset, size = _wav_layout(Path(path))
        frames = size // (2 * channels)
        if frames == 0:
            yield np.zeros((0, channels), np.int16), rate
            return
        data = np.memmap(path, dtype="<i2", mode="r", offset=offset, shape=(frames, channels))
        yield data, rate
        del data


class Mixer:
    """The recording's PCM with the voice windows replaced; read any range of the mix as float32."""

    def __init__(self, pcm: np.ndarray, rate: int, inserts: list[AudioInsert], crossfade: float = CROSSFADE_SECONDS) -> None:
        self.pcm, self.rate = pcm, rate
        self.total, self.channels = pcm.shape
        self.windows: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = []
        for ins in sorted(inserts, key=lambda i: i.start):
            s0, s1 = window_samples(ins, rate)
            s0, s1 = max(0, s0), min(self.total, s1)
            if s1 <= s0:
                continue
            data = load_insert(ins, rate, self.channels)[: s1 - s0]
            g_in, g_orig = equal_power_fades(s1 - s0, round(crossfade * rate))
            self.windows.append((s0, s1, data, g_in, g_orig))

    def spans(self) -> list[tuple[int, int]]:
        """Sample ranges [start, end) that differ from the original."""
        return [(s0, s1) for s0, s1, *_ in self.windows]

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Mixed samples [lo, hi) as float32 ``(samples, channels)`` (zeros past the end)."""
        lo, hi = max(0, lo), max(lo, hi)
        block = np.zeros((hi - lo, self.channels), np.float32)
        end = min(hi, self.total)
        if end > lo:
            block[: end - lo] = self.pcm[lo:end].astype(np.float32) / 32768.0
        for s0, s1, data, g_in, g_orig in self.windows:
            a, b = max(s0, lo), min(s1, hi)
            if a >= b:
                continue
            block[a - lo : b - lo] = block[a - lo : b - lo] * g_orig[a - s0 : b - s0, None] + data[a - s0 : b - s0] * g_in[a - s0 : b - s0, None]
        return block


def load_insert(insert: AudioInsert, rate: int, channels: int) -> np.ndarray:
    """An insert's WAV as float32 ``(samples, channels)`` at ``rate``, exactly its window long."""

    with storage.local_path(insert.uri, suffix=".wav") as path, av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout=channel_layout(channels), rate=rate)
        parts = []
        for frame in container.decode(audio=0):
            parts += [f.to_ndarray().reshape(-1, f.layout.nb_channels) for f in resampler.resample(frame)]
        parts += [f.to_ndarray().reshape(-1, f.layout.nb_channels) for f in resampler.resample(None)]
    data = np.concatenate(parts, axis=0) if parts else np.zeros((0, channels), np.float32)
    want = window_samples(insert, rate)[1] - window_samples(insert, rate)[0]
    if data.shape[0] < want:
        data = np.concatenate([data, np.zeros((want - data.shape[0], channels), np.float32)])
    return data[:want].astype(np.float32)


def window_samples(insert: AudioInsert, rate: int) -> tuple[int, int]:
    return round(insert.start * rate), round(insert.end * rate)


def equal_power_fades(length: int, fade: int) -> tuple[np.ndarray, np.ndarray]:
    """Gains ``(insert, original)`` over a window: sin/cos ramps of ``fade`` samples at both edges."""
    gain = np.ones(length, np.float32)
    fade = min(fade, length // 2)
    if fade > 0:
        ramp = np.sin(np.linspace(0, np.pi / 2, fade + 2, dtype=np.float64)[1:-1]).astype(np.float32)
        gain[:fade] = ramp
        gain[length - fade :] = ramp[::-1]
    return gain, np.sqrt(np.clip(1.0 - gain**2, 0.0, 1.0)).astype(np.float32)


def mix_audio(
    audio_uri: str, inserts: list[AudioInsert], chunk: int = 48000, crossfade: float = CROSSFADE_SECONDS
) -> Iterator[tuple[np.ndarray, int]]:
    """Yield ``(block, rate)``: float32 ``(samples, channels)`` chunks of the mixed track, in order.

    Only the windows change; every other sample is the original WAV's, scaled to float.
    """
    with open_pcm(audio_uri) as (pcm, rate):
        mixer = Mixer(pcm, rate, inserts, crossfade)
        for pos in range(0, mixer.total, chunk):
            yield mixer.read(pos, min(mixer.total, pos + chunk)), rate
