"""The audio front-end of Wav2Lip, reproduced with numpy/scipy (no librosa at run time).

Parameters are the original's ``hparams.py`` / ``audio.py``: 16 kHz mono, pre-emphasis 0.97,
centred STFT with reflect padding (n_fft 800, hop 200, Hann window 800), magnitude, 80 Slaney mel
bands 55-7600 Hz, ``20 log10(max(1e-5, x)) - 20`` dB, normalized symmetrically to [-4, 4] from
-100 dB. 80 mel frames per second; each video frame sees 16 of them.
"""

from __future__ import annotations

from functools import lru_cache

import av
import numpy as np
from scipy.signal import get_window, lfilter

from loom import storage
from loom.errors import InputError

SAMPLE_RATE = 16000
PREEMPHASIS = 0.97
N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0
MEL_FRAMES_PER_SECOND = SAMPLE_RATE // HOP  # 80
MEL_STEPS = 16  # mel frames seen per video frame


def load_speech(uri: str) -> np.ndarray:
    """Any audio (or video) file's first audio stream as float32 mono at 16 kHz."""
    with storage.local_path(uri) as path:
        try:
            container = av.open(str(path))
        except (av.error.InvalidDataError, av.error.FileNotFoundError, OSError) as exc:
            raise InputError("audio", f"{uri} is not readable audio ({exc})", "use a WAV, MP3, M4A or video file") from None
        with container:
            if not container.streams.audio:
                raise InputError("audio", f"{uri} has no audio stream", "use a file with sound")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            parts = [f.to_ndarray().reshape(-1) for frame in container.decode(audio=0) for f in resampler.resample(frame)]
            parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's auditory-toolbox mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asanyarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = hz / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, mels)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asanyarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freqs)


@lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """``(80, 401)`` triangular Slaney-normalized filters (what ``librosa.filters.mel`` returns)."""
    fft_freqs = np.fft.rfftfreq(N_FFT, d=1.0 / SAMPLE_RATE)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]  # equal area per band
    return weights


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return get_window("hann", WIN, fftbins=True)


def melspectrogram(wav: np.ndarray) -> np.ndarray:
    """``(80, 1 + len(wav) // 200)`` normalized log-mel of 16 kHz mono samples, in [-4, 4]."""
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    emphasized = lfilter([1.0, -PREEMPHASIS], [1.0], wav)
    pad = N_FFT // 2
    if len(emphasized) <= pad:  # reflect padding needs more samples than it adds
        emphasized = np.pad(emphasized, (0, pad + 1 - len(emphasized)))
    padded = np.pad(emphasized, pad, mode="reflect")
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]
    magnitude = np.abs(np.fft.rfft(frames * _window(), axis=1)).T  # (401, T)
    mel = mel_filters() @ magnitude
    min_level = 10 ** (MIN_LEVEL_DB / 20)  # 1e-5
    db = 20 * np.log10(np.maximum(min_level, mel)) - REF_LEVEL_DB
    normalized = 2 * MAX_ABS_VALUE * (db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB) - MAX_ABS_VALUE
    return np.clip(normalized, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


def mel_start(seconds: float) -> int:
    """First mel index of the 16-frame window for a video frame shown ``seconds`` into the audio.

    For frame ``i`` of a clip at ``fps`` this is the original's ``int(i * 80 / fps)``.
    """
    # The epsilon absorbs float error in i / fps (1.4 is stored as 1.39999...); real starts are
    # at least 1/3000 of a mel frame away from the next integer, so it never rounds a true value up.
    return int(float(seconds) * MEL_FRAMES_PER_SECOND + 1e-6) if seconds > 0 else 0


def mel_windows(mel: np.ndarray, starts: list[int]) -> np.ndarray:
    """``(N, 80, 16)`` windows at the given starts, clamped to the last full window (as the original)."""
    if mel.shape[1] < MEL_STEPS:  # shorter than 0.2 s: pad with silence (the normalized floor)
        mel = np.pad(mel, ((0, 0), (0, MEL_STEPS - mel.shape[1])), constant_values=-MAX_ABS_VALUE)
    last = mel.shape[1] - MEL_STEPS
    return np.stack([mel[:, min(max(s, 0), last) : min(max(s, 0), last) + MEL_STEPS] for s in starts]) if starts else np.zeros(
        (0, N_MELS, MEL_STEPS), np.float32
    )
