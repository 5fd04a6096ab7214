"""Loudness as people hear it (EBU R128 / ITU-R BS.1770, measured by FFmpeg's ``ebur128``) and level matching.

FFmpeg's meter rather than pyloudnorm: PyAV is loaded anyway, and pyloudnorm's scipy.signal import
alone costs about a second in every fresh ``loom personalize`` process. The two agree within
0.15 LU (a test holds them to it).
"""

from __future__ import annotations

import av
import numpy as np

# BS.1770 gates in 400 ms blocks: shorter audio has no integrated loudness, so it is measured by
# repeating it to one block (a level estimate with the same K-weighting).
MIN_BLOCK_S = 0.4
SILENT_LUFS = -70.0  # BS.1770's absolute gate: anything quieter counts as silence
_LAYOUTS = {1: "mono", 2: "stereo"}


def integrated_loudness(samples: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of (frames,) or (frames, channels) float audio; -70 when silent."""
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.shape[0] == 0 or not np.any(audio):
        return SILENT_LUFS
    if audio.shape[1] not in _LAYOUTS:  # BS.1770 weighs surround channels; voice lines are mono or stereo
        audio = audio.mean(axis=1, keepdims=True)
    # One block and a step past it, so the meter closes at least one gated block.
    need = int(np.ceil((MIN_BLOCK_S + 0.1) * sample_rate)) + 1
    if audio.shape[0] < need:
        audio = np.tile(audio, (int(np.ceil(need / audio.shape[0])), 1))
    value = _ebur128_integrated(audio, sample_rate)
    return max(value, SILENT_LUFS) if np.isfinite(value) else SILENT_LUFS


def _ebur128_integrated(audio: np.ndarray, sample_rate: int) -> float:
    layout = _LAYOUTS[audio.shape[1]]
    graph = av.filter.Graph()
    source = graph.add_abuffer(format="fltp", sample_rate=sample_rate, layout=layout)
    meter = graph.add("ebur128", "metadata=1")
    sink = graph.add("abuffersink")
    source.link_to(meter)
    meter.link_to(sink)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio.T), format="fltp", layout=layout)
    frame.sample_rate, frame.pts = sample_rate, 0
    graph.push(frame)
    graph.push(None)
    value = float("nan")
    while True:
        try:
            out = graph.pull()
        except (av.error.EOFError, av.error.BlockingIOError):
            break
        reading = out.metadata.get("lavfi.r128.I")
        if reading is not None:
            value = float(reading)
    return value


def gain_to_match(current_lufs: float, target_lufs: float, peak: float, ceiling_dbfs: float = -1.0) -> float:
    """Linear gain that brings ``current`` to ``target`` without pushing the peak over the ceiling."""
    if current_lufs <= SILENT_LUFS:
        return 1.0
    gain = 10.0 ** ((target_lufs - current_lufs) / 20.0)
    ceiling = 10.0 ** (ceiling_dbfs / 20.0)
    if peak > 0 and peak * gain > ceiling:
        gain = ceiling / peak
    return float(gain)
