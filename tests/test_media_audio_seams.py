"""The voice window's seams: equal-power crossfades at both edges, checked where the signals are
far from zero (a hard cut there is a click), against a reference mix computed here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import wavfile

from loom.edits import AudioInsert
from loom.media.audio_mix import CROSSFADE_SECONDS, mix_audio

RATE = 48000
START, END = 1.0, 1.6  # the voice window: 0.6 s, both edges on whole samples


def original_signal(n: int) -> np.ndarray:
    """A 5 Hz swell (+0.5 at both edges) under a 700 Hz tone: far from zero where the window cuts."""
    t = np.arange(n) / RATE
    return 0.5 * np.cos(2 * np.pi * 5 * t) + 0.08 * np.sin(2 * np.pi * 700 * t)


def insert_signal(n: int) -> np.ndarray:
    """The new line: -0.5 at both edges (a 1.0 jump against the original), with a 1 kHz tone."""
    t = np.arange(n) / RATE
    return -0.5 * np.cos(2 * np.pi * 5 * t) + 0.08 * np.sin(2 * np.pi * 1000 * t)


def reference_mix(orig: np.ndarray, ins: np.ndarray, s0: int, s1: int, fade: int) -> np.ndarray:
    """Equal-power crossfade written out: insert gain sin(theta), original cos(theta), theta 0 -> pi/2
    over ``fade`` samples inside each edge."""
    out = orig.copy()
    n = s1 - s0
    theta = np.full(n, np.pi / 2)
    ramp = np.pi / 2 * (np.arange(fade) + 1) / (fade + 1)
    theta[:fade], theta[n - fade :] = ramp, ramp[::-1]
    out[s0:s1] = orig[s0:s1] * np.cos(theta) + ins * np.sin(theta)
    return out


def largest_step(signal: np.ndarray, centre: int, reach: int) -> float:
    return float(np.abs(np.diff(signal[centre - reach : centre + reach])).max())


def test_both_seams_follow_the_equal_power_crossfade(tmp_path: Path) -> None:
    total = 2 * RATE
    orig = original_signal(total)
    wavfile.write(str(tmp_path / "orig.wav"), RATE, (np.stack([orig, orig], 1) * 32767).round().astype(np.int16))
    s0, s1 = round(START * RATE), round(END * RATE)
    ins = insert_signal(s1 - s0)
    # fitted speech comes in the recording's own rate and channels (voice.fit)
    wavfile.write(str(tmp_path / "ins.wav"), RATE, (np.stack([ins, ins], 1) * 32767).round().astype(np.int16))
    insert = AudioInsert(segment_id="hi", uri=str(tmp_path / "ins.wav"), start=START, end=END, sample_rate=RATE)

    mixed = np.concatenate([block for block, _ in mix_audio(str(tmp_path / "orig.wav"), [insert], chunk=20000)])[:, 0]
    assert mixed.shape == (total,)
    quantized = lambda x: np.round(x * 32767) / 32768.0  # noqa: E731 - the 16-bit WAVs' own rounding
    fade = round(CROSSFADE_SECONDS * RATE)
    want = reference_mix(quantized(orig), quantized(ins), s0, s1, fade)

    for edge in (s0, s1):
        region = slice(edge - 2 * fade, edge + 2 * fade)
        # the mix itself, sample by sample, through each crossfade (one 16-bit step of slack)
        assert np.abs(mixed[region] - want[region]).max() < 2e-3, edge
        # the largest step across the seam, two-sided: near the crossfade's own (~0.03), far below a
        # hard cut's 1.0 and never flattened to silence
        real = largest_step(want, edge, 2 * fade)
        got = largest_step(mixed, edge, 2 * fade)
        assert 0.8 * real <= got <= 1.25 * real, (edge, got, real)
        assert real < 0.05
    # outside the window every sample is the original's; inside, past the fades, the insert's
    assert np.array_equal(mixed[: s0], quantized(orig)[: s0].astype(np.float32))
    assert np.array_equal(mixed[s1:], quantized(orig)[s1:].astype(np.float32))
    assert np.abs(mixed[s0 + fade : s1 - fade] - quantized(ins)[fade:-fade]).max() < 1e-4
