"""Time-stretch speech without changing its pitch: FFmpeg's ``atempo`` (WSOLA) through PyAV."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np


def change_tempo(samples: np.ndarray, sample_rate: int, tempo: float) -> np.ndarray:
    """Mono float32 speech played ``tempo`` times faster (>1 shorter), pitch kept."""
    mono = np.ascontiguousarray(np.asarray(samples, dtype=np.float32).reshape(-1))
    if abs(tempo - 1.0) < 1e-6 or mono.size == 0:
        return mono.copy()
    graph = av.filter.Graph()
    source = graph.add_abuffer(format="flt", sample_rate=sample_rate, layout="mono", time_base=Fraction(1, sample_rate))
    atempo = graph.add("atempo", f"{tempo:.6f}")
    sink = graph.add("abuffersink")
    source.link_to(atempo)
    atempo.link_to(sink)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(mono[None, :], format="flt", layout="mono")
    frame.sample_rate = sample_rate
    frame.pts = 0
    frame.time_base = Fraction(1, sample_rate)
    graph.push(frame)
    graph.push(None)
    pieces: list[np.ndarray] = []
    while True:
        try:
            out = graph.pull()
        except (av.error.EOFError, av.error.BlockingIOError):
            break
        pieces.append(out.to_ndarray().reshape(-1))
    return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, dtype=np.float32)
