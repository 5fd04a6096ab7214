"""Face boxes for the frames of a voice window, found once per template and stored as JSON.

Two detectors: OpenCV's Haar cascade (ships inside the opencv 4.x wheels, so it works offline
with nothing to download) and YuNet (``cv2.FaceDetectorYN``, much better on turned and small
faces) when ``LOOM_FACE_MODEL`` names its ONNX file.

Detection runs on every ``DETECT_EVERY``-th frame (and the first frame of each shot, and the last)
at a reduced size; the frames between follow the face by correlation on small grey frames, which
costs a fraction of a detection. Implausible detections (a box far from a face's proportions, a
size jump) are dropped. Detections are linked into identities by position and size within a shot
and by appearance (a colour histogram) across a cut; the window follows ONE identity, the one seen
most (the speaker when several people are visible), and frames where that face is not found are
left without a box (untouched, and counted) rather than given someone else's. Boxes get the
original Wav2Lip padding (extra margin below the chin), short detection gaps are bridged, and boxes
are averaged over a few frames, never across a scene cut.
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
DETECT_LONG_SIDE = 400  # detection runs on frames scaled down to this (boxes scaled back)
DETECT_EVERY = 6  # a detection every this many frames; the face is followed by correlation between
TRACK_LONG_SIDE = 320  # the face is followed between detections on grey frames of this size
TRACK_SCORE = 0.5  # a followed position must correlate this well with the face one frame earlier
ASPECT_RANGE = (0.6, 1.7)  # plausible width / height of a detected face
SIZE_JUMP = 1.6  # a face of one identity does not grow or shrink more than this between detections
SAME_FACE = 0.6  # colour-histogram correlation that makes a face after a cut the same person ...
SAME_FACE_SHAPE = 0.8  # ... with its grey 24 x 24 picture correlating this well (another person: 0.2-0.6)
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
        # a face under ~8% of the frame's height is too small to lip-sync (Wav2Lip works at 96 px)
        side = max(24, int(min(gray.shape) * 0.08))
        for cascade in self._cascades:  # the second cascade only when the first finds nothing
            found = cascade.detectMultiScale(gray, scaleFactor=1.15, minNeighbors=5, minSize=(side, side))
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


# ------------------------------------------------------------------ identities


class _Detection:
    """A face found on a detection frame (frame pixels), with its appearance."""

    def __init__(self, offset: int, box: np.ndarray, shot: int, small: np.ndarray, scale: float) -> None:
        self.offset, self.box, self.shot = offset, box, shot
        self.hist, self.picture = _appearance(small, box, scale)
        self.identity = -1

    def looks_like(self, other: _Detection) -> bool:
        colour = float(cv2.compareHist(self.hist, other.hist, cv2.HISTCMP_CORREL))
        a, b = self.picture - self.picture.mean(), other.picture - other.picture.mean()
        den = float(np.sqrt((a * a).sum() * (b * b).sum()))
        shape = float((a * b).sum() / den) if den > 1e-6 else 0.0
        return colour >= SAME_FACE and shape >= SAME_FACE_SHAPE


def plausible(box: np.ndarray, width: int, height: int) -> bool:
    """A face's proportions, mostly inside the frame, and not a sliver or most of the frame."""
    w, h = box[2] - box[0], box[3] - box[1]
    if w <= 0 or h <= 0 or not ASPECT_RANGE[0] <= w / h <= ASPECT_RANGE[1]:
        return False
    if w * h > 0.6 * width * height:
        return False
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return 0 <= cx < width and 0 <= cy < height


def _appearance(bgr: np.ndarray, box: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The face's hue/saturation histogram (its middle: hair and background mostly left out) and
    its grey picture at 24 x 24."""
    x1, y1, x2, y2 = (box * scale).astype(int)
    whole = bgr[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)]
    mx, my = (x2 - x1) // 5, (y2 - y1) // 5
    crop = bgr[max(0, y1 + my) : max(0, y2 - my), max(0, x1 + mx) : max(0, x2 - mx)]
    if crop.size == 0 or whole.size == 0:
        return np.zeros((16 * 8, 1), np.float32), np.zeros((24, 24), np.float32)
    hist = cv2.calcHist([cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)], [0, 1], None, [16, 8], [0, 180, 0, 256])
    picture = cv2.resize(cv2.cvtColor(whole, cv2.COLOR_BGR2GRAY), (24, 24), interpolation=cv2.INTER_AREA)
    return cv2.normalize(hist, hist).reshape(-1, 1), picture.astype(np.float32)


def _same_place(a: np.ndarray, b: np.ndarray) -> bool:
    """Two boxes of one face a few frames apart: overlapping or near, of a similar size."""
    wa, wb = a[2] - a[0], b[2] - b[0]
    if not 1 / SIZE_JUMP <= wa / max(wb, 1e-6) <= SIZE_JUMP:
        return False
    centre = np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2)
    return _iou(a, b) > 0.3 or centre < 0.5 * max(wa, wb)


def link_identities(detections: list[_Detection]) -> int:
    """Give each detection an identity (in place); the number of identities. Within a shot a face
    continues the identity whose latest box is in the same place; after a cut, the one it looks
    like (each identity taken at most once per frame)."""
    latest: list[_Detection] = []
    by_offset: dict[int, list[_Detection]] = {}
    for det in detections:
        by_offset.setdefault(det.offset, []).append(det)
    for offset in sorted(by_offset):
        taken: set[int] = set()
        for det in sorted(by_offset[offset], key=lambda d: -(d.box[2] - d.box[0])):
            best, best_score = -1, 0.0
            for identity, last in enumerate(latest):
                if identity in taken:
                    continue
                if last.shot == det.shot:
                    score = 2.0 if _same_place(last.box, det.box) else 0.0
                else:
                    score = 1.0 if last.looks_like(det) else 0.0
                if score > best_score:
                    best, best_score = identity, score
            if best < 0:
                best = len(latest)
                latest.append(det)
            latest[best] = det
            det.identity = best
            taken.add(best)
    return len(latest)


def speaker(detections: list[_Detection], identities: int) -> int | None:
    """The identity seen on most detection frames (the larger face on a tie), or None."""
    if not detections:
        return None
    seen = [0] * identities
    area = [0.0] * identities
    for det in detections:
        seen[det.identity] += 1
        area[det.identity] += float((det.box[2] - det.box[0]) * (det.box[3] - det.box[1]))
    return max(range(identities), key=lambda i: (seen[i], area[i]))


def follow(gray: list[np.ndarray], start: int, box: np.ndarray, stop: int, scale: float) -> dict[int, np.ndarray]:
    """Boxes for frames ``start+1 .. stop-1`` (offsets into ``gray``) following the face in ``box``
    on frame ``start`` by correlation, until it no longer correlates."""
    out: dict[int, np.ndarray] = {}
    current = box * scale
    for k in range(start + 1, stop):
        prev, now = gray[k - 1], gray[k]
        x1, y1, x2, y2 = current
        tw, th = int(round(x2 - x1)), int(round(y2 - y1))
        tx, ty = int(round(x1)), int(round(y1))
        if tw < 8 or th < 8 or tx < 0 or ty < 0 or tx + tw > prev.shape[1] or ty + th > prev.shape[0]:
            break
        template = prev[ty : ty + th, tx : tx + tw]
        reach_x, reach_y = tw // 2 + 2, th // 2 + 2
        sx0, sy0 = max(0, tx - reach_x), max(0, ty - reach_y)
        region = now[sy0 : min(now.shape[0], ty + th + reach_y), sx0 : min(now.shape[1], tx + tw + reach_x)]
        if region.shape[0] < th or region.shape[1] < tw or float(template.std()) < 2.0:
            break
        scores = cv2.matchTemplate(region, template, cv2.TM_CCOEFF_NORMED)
        _, peak, _, (px, py) = cv2.minMaxLoc(scores)
        if peak < TRACK_SCORE:
            break
        dx, dy = sx0 + px - tx, sy0 + py - ty
        current = current + np.array([dx, dy, dx, dy], np.float64)
        out[k] = current / scale
    return out


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
    n = read_stop - read_first
    cuts: set[int] = set()  # offsets into the window read
    detections: list[_Detection] = []
    detected_at: set[int] = set()
    gray: list[np.ndarray] = []  # small grey frames, to follow the face between detections
    previous_thumb: np.ndarray | None = None
    shot = 0
    track_scale = 1.0
    for index, bgr in read_frames(video_uri, read_first, read_stop, fmt="bgr24"):
        k = index - read_first
        while len(gray) < k:  # a frame the decoder did not return: nothing to follow on it
            gray.append(np.zeros_like(gray[-1]) if gray else np.zeros((2, 2), np.uint8))
        thumb = _thumbnail(bgr)
        cut = previous_thumb is not None and is_scene_cut(previous_thumb, thumb)
        if cut:
            cuts.add(k)
            shot += 1
        previous_thumb = thumb
        track_scale = min(1.0, TRACK_LONG_SIDE / max(bgr.shape[:2]))
        gray.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), None, fx=track_scale, fy=track_scale,
                               interpolation=cv2.INTER_AREA) if track_scale < 1 else cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        if k % DETECT_EVERY and not cut and k != n - 1:
            continue
        detected_at.add(k)
        scale = min(1.0, DETECT_LONG_SIDE / max(bgr.shape[:2]))
        small = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else bgr
        for x, y, w, h, _ in detector.detect(small):
            box = np.array([x, y, x + w, y + h], np.float64) / scale
            if plausible(box, video.width, video.height):
                detections.append(_Detection(k, box, shot, small, scale))
    last_read = len(gray)
    identities = link_identities(detections)
    chosen = speaker(detections, identities)
    raw: list[np.ndarray | None] = [None] * n
    mine = sorted((d for d in detections if d.identity == chosen), key=lambda d: d.offset)
    for det in mine:
        raw[det.offset] = det.box
    # From each detection the face is followed frame by frame (each step verified by correlation)
    # up to its next detection, a cut, or the second detection frame in a row that misses it (the
    # detector misses faces now and then; two misses in a row, and the face is let go).
    found_at = {d.offset for d in mine}
    for det in mine:
        misses, until = 0, last_read
        for k in sorted(c for c in detected_at | cuts | {last_read} if c > det.offset):
            if k in found_at or k in cuts or k == last_read:
                until = k
                break
            misses += 1
            if misses == 2:
                until = k
                break
        for k, box in follow(gray, det.offset, det.box, until, track_scale).items():
            raw[k] = box
    for k in range(last_read, n):
        raw[k] = None
    filled = bridge_gaps(raw, cuts)
    smoothed = smooth_boxes(raw, cuts)
    lo, hi = first - read_first, stop - read_first
    boxes = [pad_box(b, pads, video.width, video.height) if b is not None else None for b in smoothed[lo:hi]]
    missing = sum(b is None for b in boxes)
    warnings = []
    if missing:
        warnings.append(
            f"lip-sync: no trustworthy face in {missing} of {len(boxes)} frames ({first}-{stop - 1}); "
            "those frames keep the original mouth (no face in them, or not the speaker's)"
        )
    others = identities - (1 if chosen is not None else 0)
    if others:
        warnings.append(f"lip-sync: {others} other face(s) seen in frames {first}-{stop - 1}; only the speaker's is edited")
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
