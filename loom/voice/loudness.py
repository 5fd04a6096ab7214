"""Loudness as people hear it (EBU R128 / ITU-R BS.1770 through pyloudnorm) and level matching."""

from __future__ import annotations

import numpy as np
import pyloudnorm

# BS.1770 gates in 400 ms blocks: shorter audio has no integrated loudness, so it is measured by
# repeating it to one block (a level estimate with the same K-weighting).
MIN_BLOCK_S = 0.4
SILENT_LUFS = -70.0  # BS.1770's absolute gate: anything quieter counts as silence


def integrated_loudness(samples: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of (frames,) or (frames, channels) float audio; -70 when silent."""
    audio = np.asarray(samples, dtype=np.float64)
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.shape[0] == 0:
        return SILENT_LUFS
    need = int(np.ceil(MIN_BLOCK_S * sample_rate)) + 1
    if audio.shape[0] < need:
        audio = np.tile(audio, (int(np.ceil(need / audio.shape[0])), 1))
    meter = pyloudnorm.Meter(sample_rate)
    value = float(meter.integrated_loudness(audio if audio.shape[1] > 1 else audio[:, 0]))
    return max(value, SILENT_LUFS) if np.isfinite(value) else SILENT_LUFS


def gain_to_match(current_lufs: float, target_lufs: float, peak: float, ceiling_dbfs: float = -1.0) -> float:
    """Linear gain that brings ``current`` to ``target`` without pushing the peak over the ceiling."""
    if current_lufs <= SILENT_LUFS:
        return 1.0
    gain = 10.0 ** ((target_lufs - current_lufs) / 20.0)
    ceiling = 10.0 ** (ceiling_dbfs / 20.0)
    if peak > 0 and peak * gain > ceiling:
        gain = ceiling / peak
    return float(gain)
