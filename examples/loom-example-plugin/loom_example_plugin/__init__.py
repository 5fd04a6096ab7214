"""A lip-sync backend and a visual effect for better-loom, as a separate package would ship them."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
from pydantic import BaseModel, Field


class LoudnessMouth:
    """A stand-in lip-sync model: repaints whole frames, by how loud the audio is under each."""

    def sync(self, video_path: str, audio_path: str, output_path: str, **kwargs: object) -> None:
        loudness = _loudness_per_second(audio_path)
        with av.open(video_path) as src, av.open(output_path, "w") as out:
            vin = src.streams.video[0]
            rate = Fraction(vin.average_rate or 25)
            vout = out.add_stream("libx264", rate=rate)
            vout.width, vout.height = vin.codec_context.width, vin.codec_context.height
            vout.pix_fmt = "yuv420p"
            vout.options = {"crf": "12", "preset": "veryfast"}
            for n, frame in enumerate(src.decode(vin)):
                rgb = frame.to_ndarray(format="rgb24").astype(np.int16)
                level = loudness[min(int(n / rate), len(loudness) - 1)] if loudness.size else 0.0
                painted = np.clip(255 - rgb + int(60 * level), 0, 255).astype(np.uint8)  # every pixel changes
                new = av.VideoFrame.from_ndarray(painted, format="rgb24")
                new.pts, new.time_base = n, 1 / rate
                for packet in vout.encode(new):
                    out.mux(packet)
            for packet in vout.encode():
                out.mux(packet)


def _loudness_per_second(audio_path: str) -> np.ndarray:
    with av.open(audio_path) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=8000)
        parts = [f.to_ndarray().reshape(-1) for fr in container.decode(audio=0) for f in resampler.resample(fr)]
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    seconds = max(1, samples.size // 8000)
    return np.array([float(np.sqrt(np.mean(samples[i * 8000 : (i + 1) * 8000] ** 2) + 1e-12)) for i in range(seconds)])


class Pixelate:
    """Pixelates the box: blocks of ``block`` pixels take their mean colour."""

    class Params(BaseModel):
        block: int = Field(default=8, ge=2, le=64, description="block size in pixels")

    def apply(self, frame: np.ndarray, box: tuple[int, int, int, int], params: dict) -> np.ndarray:
        x, y, w, h = box
        block = int(params.get("block", 8))
        region = frame[y : y + h, x : x + w]
        for by in range(0, h, block):
            for bx in range(0, w, block):
                cell = region[by : by + block, bx : bx + block]
                cell[...] = cell.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
        return frame
