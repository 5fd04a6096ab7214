"""The loudness meter (FFmpeg's ebur128) against pyloudnorm, an independent BS.1770 implementation."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from loom.voice.loudness import SILENT_LUFS, gain_to_match, integrated_loudness


def _speechlike(rate: int, seconds: float, channels: int, level: float) -> np.ndarray:
    rng = np.random.default_rng(rate + channels)
    n = int(rate * seconds)
    envelope = np.abs(np.sin(np.linspace(0, 9 * np.pi, n)))  # syllable-like bursts and gaps
    noise = rng.standard_normal((n, channels)) * level * envelope[:, None]
    return noise.astype(np.float32)


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_matches_pyloudnorm(rate: int, channels: int) -> None:
    audio = _speechlike(rate, 3.0, channels, 0.05)
    ours = integrated_loudness(audio, rate)
    reference = pyloudnorm.Meter(rate).integrated_loudness(audio.astype(np.float64) if channels > 1 else audio[:, 0].astype(np.float64))
    assert abs(ours - reference) < 0.15
    # 6 dB quieter reads 6 LU lower: it measures level, not a constant
    assert abs(integrated_loudness(audio * 0.5, rate) - (ours - 6.02)) < 0.05


def test_short_and_silent_audio() -> None:
    assert integrated_loudness(np.zeros(48000, np.float32), 48000) == SILENT_LUFS
    assert integrated_loudness(np.zeros((0, 2), np.float32), 48000) == SILENT_LUFS
    short = _speechlike(48000, 0.2, 1, 0.05)  # shorter than one 400 ms block: measured repeated
    long_ = np.tile(short, (10, 1))
    assert abs(integrated_loudness(short, 48000) - integrated_loudness(long_, 48000)) < 0.3


def test_gain_reaches_the_target_within_the_ceiling() -> None:
    audio = _speechlike(48000, 2.0, 1, 0.02)
    current = integrated_loudness(audio, 48000)
    gain = gain_to_match(current, current + 6.0, float(np.abs(audio).max()))
    assert abs(integrated_loudness(audio * gain, 48000) - (current + 6.0)) < 0.05
    capped = gain_to_match(current, current + 40.0, float(np.abs(audio).max()))
    assert float(np.abs(audio).max()) * capped <= 10 ** (-1 / 20) + 1e-6
