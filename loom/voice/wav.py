"""WAV files as float32 arrays (frames, channels), read and written through ``loom.storage``."""

from __future__ import annotations

import io

import numpy as np
from scipy.io import wavfile

from loom import storage


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
    rate, data = wavfile.read(io.BytesIO(storage.read_bytes(uri)))
    return to_float(data), int(rate)


def read_wav_span(uri: str, start: int, stop: int) -> tuple[np.ndarray, int]:
    """Frames [start, stop) of a WAV (clamped to the file), memory-mapped when local."""
    if storage.is_remote(uri):
        data, rate = read_wav(uri)
        return data[max(start, 0) : max(stop, 0)], rate
    with storage.local_path(uri) as path:
        rate, mapped = wavfile.read(str(path), mmap=True)
        return to_float(np.array(mapped[max(start, 0) : max(stop, 0)])), int(rate)


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV bytes of float samples (frames,) or (frames, channels)."""
    pcm = np.clip(np.round(np.asarray(samples, dtype=np.float64) * 32767.0), -32768, 32767).astype(np.int16)
    buffer = io.BytesIO()
    wavfile.write(buffer, int(sample_rate), pcm)
    return buffer.getvalue()


def write_wav(uri: str, samples: np.ndarray, sample_rate: int) -> str:
    return storage.write_bytes(uri, wav_bytes(samples, sample_rate))
