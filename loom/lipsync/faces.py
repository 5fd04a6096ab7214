"""Face boxes for the frames of a voice window, found once per template and stored as JSON.

Two detectors: OpenCV's Haar cascade (ships inside the opencv 4.x wheels, so it works offline
with nothing to download) and YuNet (``cv2.FaceDetectorYN``, much better on turned and small
faces) when ``LOOM_FACE_MODEL`` names its ONNX file. One face is followed per frame: the one
overlapping the previous frame's face, else the largest. Boxes get the original Wav2Lip padding
(extra margin below the chin), short detection gaps are bridged, and boxes are averaged over a
few frames, never across a scene cut.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from pydantic import BaseModel, Field

from loom import storage
from loom.errors import InputError
from loom.media.frames import read_frames
from loom.media.probe import VideoInfo
from loom.settings import get_settings

log = logging.getLogger("loom.lipsync")

# The original inference's default padding (top, bottom, left, right) in pixels: chin included.
DEFAULT_PADS = (0, 10, 0, 0)
SMOOTH_FRAMES = 5  # the original averages boxes over 5 frames
MAX_GAP = 4  # missed detections bridged by interpolation when faces are found on both sides
HANDLE = 3  # frames read beyond the window on each side so smoothing at its edges has context
DETECT_LONG_SIDE = 640  # detection runs on frames scaled down to this (boxes scaled back)
SCENE_CUT_THRESHOLD = 30.0  # mean HSV difference (0-255) between consecutive thumbnails


class FaceBox(BaseModel):
    """A padded face box in frame pixels, ``[x1, x2) x [y1, y2)``."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1


class FaceTrack(BaseModel):
    """One face box (or none) per frame of ``[first, stop)`` of a video."""

    video_uri: str
    first: int
    stop: int
    width: int
    height: int
    detector: str
    pads: tuple[int, int, int, int] = Field(DEFAULT_PADS, description="top, bottom, left, right padding in pixels")
    boxes: list[FaceBox | None] = Field(default_factory=list, description="per frame, first..stop-1")
    interpolated: list[int] = Field(default_factory=list, description="frames whose box bridges a short miss")
    scene_cuts: list[int] = Field(default_factory=list, description="frames that start a new shot")
    frames_without_face: int = 0
    warnings: list[str] = Field(default_factory=list)

    def box(self, frame: int) -> FaceBox | None:
        if not self.first <= frame < self.stop:
            return None
        return self.boxes[frame - self.first]


class FaceDetector(Protocol):
    name: str

    def detect(self, bgr: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        """Faces as ``(x, y, w, h, score)`` in the given image's pixels."""
        ...


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade: offline, frontal faces only."""

    name = "haar"

    def __init__(self) -> None:
        data = getattr(cv2, "data", None)  # the 5.0 wheels have no cv2.data and no XMLs
        base = Path(data.haarcascades) if data is not None else Path()
        cascades = [base / "haarcascade_frontalface_default.xml", base / "haarcascade_frontalface_alt2.xml"]
        self._cascades = [cv2.CascadeClassifier(str(p)) for p in cascades if p.exists()]
        self._cascades = [c for c in self._cascades if not c.empty()]
        if not self._cascades:
            raise InputError(
                "face_model",
                "this OpenCV build ships no Haar cascades",
                "install opencv-contrib-python-headless 4.x or set LOOM_FACE_MODEL to a YuNet ONNX file",
            )

    def detect(self, bgr: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        gray = cv2.equalizeHist(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        side = max(24, int(min(gray.shape) * 0.06))
        for cascade in self._cascades:  # the second cascade only when the first finds nothing
            found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
            if len(found):
                return [(float(x), float(y), float(w), float(h), 1.0) for x, y, w, h in found]
        return []


class YuNetFaceDetector:
    """OpenCV's YuNet CNN (``face_detection_yunet_*.onnx``, MIT), given as a file by the user."""

    name = "yunet"

    def __init__(self, model_uri: str, score_threshold: float = 0.6) -> None:
        if not storage.exists(model_uri):
            raise InputError("face_model", f"no YuNet model at {model_uri}", "set LOOM_FACE_MODEL to the ONNX file")
        # The network is read when created, so a downloaded copy may go right after.
        with storage.local_path(model_uri, suffix=".onnx") as path:
            try:
                self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, 0.3, 5000)
            except cv2.error as exc:
                raise InputError(
                    "face_model", f"{model_uri} is not a YuNet ONNX model ({exc.msg})", "use face_detection_yunet_2023mar.onnx"
                ) from None
        self._size: tuple[int, int] | None = None

    def detect(self, bgr: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        h, w = bgr.shape[:2]
        if self._size != (w, h):
            self._net.setInputSize((w, h))
            self._size = (w, h)
        _, faces = self._net.detect(bgr)
        if faces is None:
            return []
        return [(float(f[0]), float(f[1]), float(f[2]), float(f[3]), float(f[-1])) for f in faces]


def face_detector(face_model: str | None = None) -> FaceDetector:
    """YuNet when a model file is configured (``LOOM_FACE_MODEL``), else the Haar cascade."""
    if face_model is None:

        face_model = get_settings().face_model
    return YuNetFaceDetector(face_model) if face_model else HaarFaceDetector()


# ------------------------------------------------------------------ per-frame decisions


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def choose_face(candidates: list[np.ndarray], previous: np.ndarray | None) -> np.ndarray | None:
    """The same person as the previous frame if one overlaps it, else the largest face."""
    if not candidates:
        return None
    if previous is not None:
        best = max(candidates, key=lambda c: _iou(c, previous))
        if _iou(best, previous) > 0.3:
            return best
    return max(candidates, key=lambda c: (c[2] - c[0]) * (c[3] - c[1]))


def _thumbnail(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.resize(bgr, (64, 36), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2HSV).astype(np.float32)


def is_scene_cut(previous_thumb: np.ndarray, thumb: np.ndarray, threshold: float = SCENE_CUT_THRESHOLD) -> bool:
    """A hard cut: the mean HSV change between consecutive frames is large (content detector)."""
    return float(np.mean(np.abs(thumb - previous_thumb))) > threshold


def bridge_gaps(raw: list[np.ndarray | None], cuts: set[int], max_gap: int = MAX_GAP) -> list[int]:
    """Fill short runs of misses between two found faces of the same shot (in place); their offsets."""
    filled: list[int] = []
    i = 0
    n = len(raw)
    while i < n:
        if raw[i] is not None:
            i += 1
            continue
        j = i
        while j < n and raw[j] is None:
            j += 1
        if 0 < i and j < n and j - i <= max_gap and not any(i <= c <= j for c in cuts):
            a, b = raw[i - 1], raw[j]
            for k in range(i, j):
                t = (k - i + 1) / (j - i + 1)
                raw[k] = (1 - t) * a + t * b
                filled.append(k)
        i = j
    return filled


def smooth_boxes(raw: list[np.ndarray | None], cuts: set[int], window: int = SMOOTH_FRAMES) -> list[np.ndarray | None]:
    """Centred moving average of box corners over ``window`` frames, within each shot."""
    out: list[np.ndarray | None] = []
    half = window // 2
    starts = sorted({0, *cuts})
    shot_of = np.searchsorted(starts, np.arange(len(raw)), side="right") - 1
    for i, box in enumerate(raw):
        if box is None:
            out.append(None)
            continue
        near = [
            raw[k]
            for k in range(max(0, i - half), min(len(raw), i + half + 1))
            if raw[k] is not None and shot_of[k] == shot_of[i]
        ]
        out.append(np.mean(near, axis=0))
    return out


def pad_box(box: np.ndarray, pads: tuple[int, int, int, int], width: int, height: int) -> FaceBox:
    top, bottom, left, right = pads
    return FaceBox(
        x1=int(max(0, round(box[0] - left))),
        y1=int(max(0, round(box[1] - top))),
        x2=int(min(width, round(box[2] + right))),
        y2=int(min(height, round(box[3] + bottom))),
    )


# ------------------------------------------------------------------ the step


def detect_faces(
    video_uri: str,
    video: VideoInfo,
    first: int,
    stop: int,
    out_uri: str,
    detector: FaceDetector | None = None,
    pads: tuple[int, int, int, int] = DEFAULT_PADS,
) -> FaceTrack:
    """Find the speaker's face in frames ``[first, stop)``; write the track as JSON to ``out_uri``."""
    detector = detector or face_detector()
    read_first = max(0, first - HANDLE)
    read_stop = min(video.frame_count, stop + HANDLE) if video.frame_count else stop + HANDLE
    raw: list[np.ndarray | None] = []
    cuts: set[int] = set()  # offsets into raw
    previous_box: np.ndarray | None = None
    previous_thumb: np.ndarray | None = None
    expected = read_first
    for index, rgb in read_frames(video_uri, read_first, read_stop):
        while expected < index:  # a frame the decoder did not return counts as a miss
            raw.append(None)
            expected += 1
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        thumb = _thumbnail(bgr)
        if previous_thumb is not None and is_scene_cut(previous_thumb, thumb):
            cuts.add(len(raw))
            previous_box = None
        previous_thumb = thumb
        scale = min(1.0, DETECT_LONG_SIDE / max(bgr.shape[:2]))
        small = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else bgr
        candidates = [np.array([x, y, x + w, y + h], np.float64) / scale for x, y, w, h, _ in detector.detect(small)]
        chosen = choose_face(candidates, previous_box)
        raw.append(chosen)
        previous_box = chosen if chosen is not None else previous_box
        expected = index + 1
    raw += [None] * max(0, (read_stop - read_first) - len(raw))
    filled = bridge_gaps(raw, cuts)
    smoothed = smooth_boxes(raw, cuts)
    lo, hi = first - read_first, stop - read_first
    boxes = [pad_box(b, pads, video.width, video.height) if b is not None else None for b in smoothed[lo:hi]]
    missing = sum(b is None for b in boxes)
    warnings = []
    if missing:
        warnings.append(
            f"lip-sync: no face in {missing} of {len(boxes)} frames ({first}-{stop - 1}); those frames keep the original mouth"
        )
    track = FaceTrack(
        video_uri=video_uri,
        first=first,
        stop=stop,
        width=video.width,
        height=video.height,
        detector=detector.name,
        pads=pads,
        boxes=boxes,
        interpolated=sorted(read_first + k for k in filled if lo <= k < hi),
        scene_cuts=sorted(read_first + c for c in cuts if lo <= c < hi),
        frames_without_face=missing,
        warnings=warnings,
    )
    storage.write_text(out_uri, track.model_dump_json())
    return track


def load_face_track(uri: str) -> FaceTrack:
    return FaceTrack.model_validate_json(storage.read_bytes(uri))
