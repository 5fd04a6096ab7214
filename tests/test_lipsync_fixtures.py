"""Shared media for the lip-sync tests: a real face (scikit-image's astronaut) moving over frames.

Scene layout of ``write_face_clip`` (25 fps, 320x240, 60 frames):
  0-19  the face drifts right over a warm gradient
  20-29 no face (same background)
  30-59 a hard cut: a cold background, the face drifts left from another place
No tests here; the file is named for the suite so it stays with the lip-sync tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from skimage import data

import pytest

from testkit.media import write_mp4

FPS = 25
SIZE = (320, 240)
HEAD = 150  # pasted head size in pixels
N_FRAMES = 60
BLANK = range(20, 30)
CUT = 30
# The astronaut's mouth centre inside the pasted head (measured on the 512x512 image, scaled).
MOUTH_IN_HEAD = ((225 - 90) * HEAD / 300, 142 * HEAD / 300)


def head(size: int = HEAD) -> np.ndarray:
    return cv2.resize(data.astronaut()[0:300, 90:390], (size, size), interpolation=cv2.INTER_AREA)


def head_position(i: int) -> tuple[int, int] | None:
    if i in BLANK:
        return None
    if i < CUT:
        return 30 + 3 * i, 30 + int(10 * np.sin(i / 5))
    return 150 - 2 * (i - CUT), 60 + int(8 * np.sin(i / 4))


def face_frame(i: int) -> np.ndarray:
    w, h = SIZE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if i < CUT:
        frame = np.stack([(xx * 0.5 + i * 2) % 256, (yy * 0.6 + 40) % 256, 90 + 0 * xx], -1)
    else:
        frame = np.stack([20 + 0 * xx, (xx * 0.3 + 60) % 256, (200 - yy * 0.4 + i) % 256], -1)
    frame = frame.astype(np.uint8)
    pos = head_position(i)
    if pos is not None:
        x, y = pos
        frame[y : y + HEAD, x : x + HEAD] = head()
    return frame


def write_face_clip(path: str | Path, n_frames: int = N_FRAMES, offset: int = 0) -> Path:
    """Frames ``offset .. offset + n_frames - 1`` of the layout above, as an H.264 MP4."""
    return write_mp4(path, (face_frame(offset + i) for i in range(n_frames)), FPS, crf=16)


def speech_like(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Voiced bursts (harmonics with a syllable envelope) plus a little noise: float32 mono."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.9 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 3.1 * t), 0, None) ** 2
    return (0.25 * voiced * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> Path:
    import scipy.io.wavfile

    scipy.io.wavfile.write(str(path), rate, samples.astype(np.float32))
    return Path(path)


def make_prepared(root: Path, start: float, end: float, segment_id: str = "hello"):
    """A prepared template around the face clip with one voice segment and its face track."""
    from loom.lipsync.faces import detect_faces
    from loom.media.probe import probe_video
    from loom.prepared import PreparedTemplate
    from loom.template import Template

    root.mkdir(parents=True, exist_ok=True)
    video = str(write_face_clip(root / "working.mp4"))
    info = probe_video(video)
    template = Template(
        id="t1",
        base_video_path=video,
        voice_segments=[{"id": segment_id, "start_time": start, "end_time": end, "template_text": "Hi {name}"}],
    )
    first, stop = info.frame_span(start, end)
    faces_uri = str(root / "faces" / f"{segment_id}.json")
    detect_faces(video, info, first, stop, faces_uri)
    return PreparedTemplate(
        template=template,
        version="v1",
        root=str(root),
        source=info,
        video=info,
        working_video_uri=video,
        audio_uri=str(root / "audio.wav"),
        faces={segment_id: faces_uri},
    )


def make_insert(root: Path, start: float, end: float, segment_id: str = "hello", rate: int = 48000):
    from loom.edits import AudioInsert

    root.mkdir(parents=True, exist_ok=True)
    wav = write_wav(root / f"{segment_id}.wav", speech_like(end - start, rate, seed=2), rate)
    return AudioInsert(segment_id=segment_id, uri=str(wav), start=start, end=end, sample_rate=rate)


@contextlib.contextmanager
def random_wav2lip(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The lip-sync engine on a seeded random checkpoint of Wav2Lip's real shapes, on the CPU, for
    the block; the settings and the loaded model are put back after it."""
    from loom.lipsync import engine
    from loom.lipsync.checkpoint import write_random_checkpoint
    from loom.settings import reload_settings

    monkeypatch.setenv("LOOM_WAV2LIP_CHECKPOINT", str(write_random_checkpoint(folder / "w2l.pth", seed=3)))
    monkeypatch.setenv("LOOM_WAV2LIP_DEVICE", "cpu")
    reload_settings()
    engine.reset_engine()
    try:
        yield
    finally:
        monkeypatch.undo()
        reload_settings()
        engine.reset_engine()
