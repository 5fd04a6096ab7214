"""The mel front-end against librosa with the original's published parameters."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.signal

from loom.lipsync.audio import load_speech, mel_filters, mel_start, mel_windows, melspectrogram
from tests.test_lipsync_fixtures import speech_like, write_wav


def reference_mel(wav: np.ndarray) -> np.ndarray:
    """Rudrabha/Wav2Lip audio.melspectrogram, written with librosa calls and hparams.py values."""
    emphasized = scipy.signal.lfilter([1, -0.97], [1], wav)
    stft = librosa.stft(y=emphasized, n_fft=800, hop_length=200, win_length=800, pad_mode="reflect")
    mel = np.dot(librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600), np.abs(stft))
    db = 20 * np.log10(np.maximum(1e-5, mel)) - 20
    return np.clip((2 * 4) * ((db + 100) / 100) - 4, -4, 4)


@pytest.mark.parametrize("seconds", [0.05, 1.0, 2.37])
def test_mel_matches_librosa_reference(seconds: float) -> None:
    wav = speech_like(seconds, seed=int(seconds * 100))
    wav[: len(wav) // 5] *= 0.0  # a silent lead-in reaches the -100 dB floor
    ours = melspectrogram(wav)
    ref = reference_mel(wav)
    assert ours.shape == ref.shape == (80, 1 + len(wav) // 200)
    assert float(np.abs(ours - ref).max()) <= 1e-3
    assert ours.min() >= -4 and ours.max() <= 4
    if seconds >= 1:  # the floor and real speech energy both show
        assert (ours == -4).any() and ours.max() > 0


def test_mel_filters_are_slaney() -> None:
    ref = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    assert np.allclose(mel_filters(), ref, atol=1e-7)


def test_window_for_each_video_frame() -> None:
    for fps in (25, 30, 29.97, 24):
        for i in range(0, 300, 7):
            assert mel_start(i / fps) == int(i * 80 / fps)
    mel = np.arange(80 * 40, dtype=np.float32).reshape(80, 40)
    windows = mel_windows(mel, [0, 10, 24, 30, 100])
    assert windows.shape == (5, 80, 16)
    assert np.array_equal(windows[1], mel[:, 10:26])
    assert np.array_equal(windows[2], mel[:, 24:40])
    assert np.array_equal(windows[3], mel[:, 24:40])  # clamped to the last full window, as the original
    short = mel_windows(mel[:, :5], [0])
    assert short.shape == (1, 80, 16) and np.all(short[0, :, 5:] == -4)


def test_load_speech_resamples_to_16k_mono(tmp_path) -> None:
    rate = 48000
    t = np.arange(rate * 2) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([tone, tone], axis=1)
    path = write_wav(tmp_path / "s.wav", stereo, rate)
    wav = load_speech(str(path))
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - 32000) <= 32
    spectrum = np.abs(np.fft.rfft(wav[4000:20000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) <= 2  # 16000 samples -> 1 Hz bins
