"""WAV files as float32 arrays (frames, channels), read and written through ``loom.storage``."""

from __future__ import annotations

import io
import wave

import numpy as np

from loom import storage

# 16/32-bit PCM (everything the engine writes) goes through the standard library's ``wave``; other
# WAVs (float, 24-bit, extensible headers) through scipy, imported only then: ``scipy.io`` costs
# about 0.1 s per process, which every ``loom personalize`` would pay.
_PCM_DTYPES = {1: np.uint8, 2: np.int16, 4: np.int32}


def _read_pcm(handle: io.BufferedIOBase | io.BytesIO, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, int] | None:
    """Frames [start, stop) of a PCM WAV via ``wave``, or None if ``wave`` cannot read it."""
    try:
        with wave.open(handle, "rb") as reader:
            width, channels, rate, total = reader.getsampwidth(), reader.getnchannels(), reader.getframerate(), reader.getnframes()
            if width not in _PCM_DTYPES:
                return None
            first = min(max(start, 0), total)
            last = total if stop is None else min(max(stop, first), total)
            reader.setpos(first)
            raw = reader.readframes(last - first)
    except (wave.Error, EOFError):
        return None
    data = np.frombuffer(raw, dtype=np.dtype(_PCM_DTYPES[width]).newbyteorder("<")).reshape(-1, channels)
    return to_float(data), int(rate)


def to_float(data: np.ndarray) -> np.ndarray:
    """Integer or float PCM as float32 in [-1, 1], always 2-D (frames, channels)."""
    if data.dtype == np.uint8:
        out = (data.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        out = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    else:
        out = data.astype(np.float32)
    return out.reshape(out.shape[0], -1)


def read_wav(uri: str) -> tuple[np.ndarray, int]:
    """(samples (frames, channels) float32, sample rate)."""
    raw = storage.read_bytes(uri)
    pcm = _read_pcm(io.BytesIO(raw))
    if pcm is not None:
        return pcm
    from scipy.io import wavfile  # only for WAVs _read_pcm does not read: ~0.17 s to import

    rate, data = wavfile.read(io.BytesIO(raw))
    return to_float(data), int(rate)


def read_wav_span(uri: str, start: int, stop: int) -> tuple[np.ndarray, int]:
    """Frames [start, stop) of a WAV (clamped to the file); a local file is read from the first frame asked."""
    if storage.is_remote(uri):
        data, rate = read_wav(uri)
        return data[max(start, 0) : max(stop, 0)], rate
    with storage.local_path(uri) as path:
        with open(path, "rb") as handle:
            pcm = _read_pcm(handle, start, stop)
        if pcm is not None:
            return pcm
        from scipy.io import wavfile  # as in read_wav

        rate, mapped = wavfile.read(str(path), mmap=True)
        return to_float(np.array(mapped[max(start, 0) : max(stop, 0)])), int(rate)


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV bytes of float samples (frames,) or (frames, channels)."""
    pcm = np.clip(np.round(np.asarray(samples, dtype=np.float64) * 32767.0), -32768, 32767).astype(np.int16)
    pcm = pcm.reshape(pcm.shape[0], -1)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(pcm.shape[1])
        writer.setsampwidth(2)
        writer.setframerate(int(sample_rate))
        writer.writeframes(pcm.astype("<i2").tobytes())
    return buffer.getvalue()


def write_wav(uri: str, samples: np.ndarray, sample_rate: int) -> str:
    return storage.write_bytes(uri, wav_bytes(samples, sample_rate))
