"""Follow a visual segment's box through its frames, once per template.

The segment names its box on its first frame. A box whose content barely changes is static and
costs one decode pass with a cheap difference per frame. How a box that changes is followed
depends on what is in it:

- A textured box (a logo, a name, a face) is followed by OpenCV's CSRT tracker, and every frame
  the box's first appearance is searched for near the tracker's answer (normalized
  cross-correlation at a few scales): a good match re-anchors the box, so the tracker cannot drift,
  and its score is the frame's confidence. A position that does not match is never used.
- A box with little texture (a plain wall, a dark background, a flat panel) gives a tracker
  nothing to hold, and one would wander onto whatever textured thing comes near. It moves with
  the camera instead: the frame's global motion, from corners followed by optical flow and fitted
  with RANSAC (or it stays put when no motion is found), and each frame its content is compared
  with its first appearance; where something else covers it the frame is flagged.

After a scene cut the box belongs to another shot: its frames are flagged and left untouched until
the original content is found again (a textured box by a whole-frame search, a plain one when the
first shot comes back). Where confidence stays low the frame is flagged and never drawn on, and a
warning names the frames. Positions are smoothed with a centred (zero-lag) filter, which an offline
pass allows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2
import numpy as np
from pydantic import BaseModel, Field

from loom import storage
from loom.media.frames import read_frames
from loom.media.probe import VideoInfo
from loom.template import VisualSegment

STATIC_MEAN_DIFF = 4.0  # mean |difference| (0-255) of the box region under which it has not moved
ANCHOR_SCORE = 0.65  # colour template match score that re-anchors the box on the first appearance
ACQUIRE_SCORE = 0.75  # a match found by searching the whole frame must be this good to be believed
EXTRAPOLATED_CONFIDENCE = 0.5  # a box carried on by its motion as it leaves the frame
LEAVING_SHARE = 0.25  # once this share of a box is out of frame, its motion carries it on
LOST_SCORE = 0.4  # below it (and no trusted tracker answer) the frame is flagged
CUT_CORRELATION = 0.4  # consecutive thumbnails correlating less than this mark a scene cut
SAME_SHOT_CORRELATION = 0.8  # a later frame's thumbnail correlating this well with the first shot's is that shot
TEXTURE_GRADIENT = 1.2  # mean gradient (grey levels per pixel, lightly blurred) under which a box is plain
PLAIN_MATCH_DIFF = 20.0  # mean |difference| (0-255) of a plain box's blurred, zero-mean content from its first
TEXTURE_RISE = 1.5  # a plain box whose texture grows past this multiple of its first (+0.3) is covered by something
MOTION_WIDTH = 480  # the camera's motion is estimated on frames scaled to this width
MIN_MOTION_INLIERS = 12
SMOOTH_WINDOW = 7
SCALES = (0.97, 1.0, 1.03)
GLOBAL_SEARCH_WIDTH = 640  # frames are searched whole at this width (then refined at full size)

Box = tuple[float, float, float, float]


class Track(BaseModel):
    """Where a visual segment's box is on each of its frames."""

    segment_id: str
    first_frame: int
    stop_frame: int = Field(description="one past the last frame")
    frame_width: int
    frame_height: int
    boxes: list[tuple[float, float, float, float]] = Field(description="x, y, w, h in pixels, one per frame")
    confidence: list[float] = Field(description="0..1 per frame: how well the box matches its first appearance")
    lost: list[bool] = Field(description="frames where the box could not be found: left unedited")
    static: bool = False
    scene_cuts: list[int] = Field(default_factory=list, description="frame indices that start a new shot")
    reanchors: int = 0
    warnings: list[str] = Field(default_factory=list)

    def box_at(self, frame: int) -> Box | None:
        """The box on ``frame``, or None outside the span or where the track was lost."""
        k = frame - self.first_frame
        if k < 0 or k >= len(self.boxes) or self.lost[k]:
            return None
        return self.boxes[k]

    @property
    def base_box(self) -> Box:
        return self.boxes[0]


def load_track(uri: str) -> Track:
    return Track.model_validate_json(storage.read_bytes(uri))


def segment_box(segment: VisualSegment, video: VideoInfo) -> Box:
    """The segment's box in pixels on its first frame (at least 4 x 4, inside the frame)."""
    w = max(4.0, segment.width * video.width)
    h = max(4.0, segment.height * video.height)
    x = min(max(0.0, segment.x * video.width), video.width - w)
    y = min(max(0.0, segment.y * video.height), video.height - h)
    return (x, y, w, h)


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def _crop(gray: np.ndarray, box: Box) -> np.ndarray:
    x, y, w, h = (int(round(v)) for v in box)
    return gray[max(0, y) : y + h, max(0, x) : x + w]


def _thumb(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    tw = 64
    return cv2.resize(gray, (tw, max(1, int(round(h * tw / w)))), interpolation=cv2.INTER_AREA).astype(np.float32)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """How alike two thumbnails are: their correlation (their mean brightness when both are flat)."""
    da, db = a - a.mean(), b - b.mean()
    den = float(np.sqrt((da * da).sum() * (db * db).sum()))
    return float((da * db).sum() / den) if den > 1e-6 else (1.0 if abs(a.mean() - b.mean()) < 10 else 0.0)


def _is_cut(a: np.ndarray, b: np.ndarray) -> bool:
    """A new shot: the thumbnails neither correlate nor share their mean brightness."""
    return _correlation(a, b) < CUT_CORRELATION


def texture(gray: np.ndarray, box: Box) -> float:
    """Mean gradient magnitude (grey levels per pixel) of the box, lightly blurred so that film
    grain and sensor noise do not count as texture."""
    region = _crop(gray, box).astype(np.float32)
    if region.size < 16:
        return 0.0
    region = cv2.GaussianBlur(region, (0, 0), 1.0)
    gx = cv2.Sobel(region, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(region, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.hypot(gx, gy).mean() / 8.0)


def _signature(gray: np.ndarray, box: Box) -> np.ndarray | None:
    """A plain box's content, blurred and reduced to 16 x 16 (None when the box is not wholly in view)."""
    x, y, w, h = box
    fh, fw = gray.shape
    if x < -0.5 or y < -0.5 or x + w > fw + 0.5 or y + h > fh + 0.5:
        return None
    region = _crop(gray, box)
    if region.size < 16:
        return None
    return cv2.resize(cv2.GaussianBlur(region, (0, 0), 2.0), (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)


class CameraMotion:
    """The frame's global motion from one frame to the next: corners of the previous frame followed
    by pyramidal Lucas-Kanade optical flow, fitted with a similarity transform by RANSAC."""

    def __init__(self, gray: np.ndarray) -> None:
        self.f = min(1.0, MOTION_WIDTH / gray.shape[1])
        self.prev = self._small(gray)

    def _small(self, gray: np.ndarray) -> np.ndarray:
        if self.f >= 1.0:
            return gray
        return cv2.resize(gray, (int(gray.shape[1] * self.f), int(gray.shape[0] * self.f)), interpolation=cv2.INTER_AREA)

    def step(self, gray: np.ndarray) -> np.ndarray | None:
        """The 2x3 transform (full-size pixels) taking the previous frame to this one, or None when
        too few corners agree on one (a flat or blurred frame, or a scene mostly in motion)."""
        small = self._small(gray)
        prev, self.prev = self.prev, small
        corners = cv2.goodFeaturesToTrack(prev, maxCorners=300, qualityLevel=0.01, minDistance=7, blockSize=7)
        if corners is None or len(corners) < MIN_MOTION_INLIERS:
            return None
        moved, status, _ = cv2.calcOpticalFlowPyrLK(prev, small, corners, None, winSize=(21, 21), maxLevel=3)
        ok = status.reshape(-1) == 1
        if ok.sum() < MIN_MOTION_INLIERS:
            return None
        matrix, inliers = cv2.estimateAffinePartial2D(corners[ok], moved[ok], method=cv2.RANSAC, ransacReprojThreshold=1.5)
        if matrix is None or inliers is None or int(inliers.sum()) < max(MIN_MOTION_INLIERS, 0.4 * ok.sum()):
            return None
        matrix = matrix.astype(np.float64)
        matrix[:, 2] /= self.f  # translation back to full-size pixels (rotation and scale are size-free)
        return matrix


def _subpixel(scores: np.ndarray, x: int, y: int) -> tuple[float, float]:
    """Parabolic refinement of a correlation peak."""

    def offset(a: float, b: float, c: float) -> float:
        den = a - 2 * b + c
        return 0.0 if abs(den) < 1e-9 else max(-0.5, min(0.5, 0.5 * (a - c) / den))

    h, w = scores.shape
    dx = offset(scores[y, x - 1], scores[y, x], scores[y, x + 1]) if 0 < x < w - 1 else 0.0
    dy = offset(scores[y - 1, x], scores[y, x], scores[y + 1, x]) if 0 < y < h - 1 else 0.0
    return dx, dy


class _Anchor:
    """The box's first appearance, searched for by normalized cross-correlation."""

    def __init__(self, image: np.ndarray, box: Box) -> None:
        self.template = _crop(image, box).astype(np.float32)
        self.w, self.h = box[2], box[3]
        self.usable = self.template.size >= 16 and float(self.template.std()) >= 3.0

    def _scaled(self, s: float) -> np.ndarray:
        tw = max(4, int(round(self.template.shape[1] * s)))
        th = max(4, int(round(self.template.shape[0] * s)))
        return cv2.resize(self.template, (tw, th), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)

    def search(
        self, image: np.ndarray, center: tuple[float, float], scale: float, reach: tuple[float, float]
    ) -> tuple[float, Box | None, float]:
        """Best (score, box, scale) with the box's centre within ``reach`` (x, y) px of ``center``.

        The box may hang up to half outside the frame (a name scrolling away): the search window
        is padded by repeating the frame's edge, so the visible part can still match.
        """
        if not self.usable:
            return 0.0, None, scale
        fh, fw = image.shape[:2]
        best: tuple[float, Box | None, float] = (-1.0, None, scale)
        for factor in SCALES:
            s = scale * factor
            tpl = self._scaled(s)
            th, tw = tpl.shape[:2]
            if tw >= 2 * fw or th >= 2 * fh or float(tpl.std()) < 1.0:
                continue
            cx = min(max(center[0], 0.0), float(fw))
            cy = min(max(center[1], 0.0), float(fh))
            x0 = int(math.floor(cx - tw / 2 - reach[0]))
            y0 = int(math.floor(cy - th / 2 - reach[1]))
            x1 = int(math.ceil(cx + tw / 2 + reach[0]))
            y1 = int(math.ceil(cy + th / 2 + reach[1]))
            x0, y0 = max(x0, -(tw // 2)), max(y0, -(th // 2))
            x1, y1 = min(x1, fw + tw // 2), min(y1, fh + th // 2)
            inner = image[max(0, y0) : min(fh, y1), max(0, x0) : min(fw, x1)]
            if inner.size == 0:
                continue
            region = cv2.copyMakeBorder(
                inner, max(0, -y0), max(0, y1 - fh), max(0, -x0), max(0, x1 - fw), cv2.BORDER_REPLICATE
            ).astype(np.float32)
            if region.shape[0] < th or region.shape[1] < tw:
                continue
            scores = cv2.matchTemplate(region, tpl, cv2.TM_CCOEFF_NORMED)
            scores = np.nan_to_num(scores, nan=-1.0, posinf=-1.0, neginf=-1.0)
            _, peak, _, (px, py) = cv2.minMaxLoc(scores)
            if peak > best[0]:
                dx, dy = _subpixel(scores, px, py)
                bw, bh = self.w * s, self.h * s
                # centre of the matched patch, then the box of (unrounded) size around it
                mx = x0 + px + dx + tw / 2
                my = y0 + py + dy + th / 2
                best = (float(peak), (mx - bw / 2, my - bh / 2, bw, bh), s)
        return best

    def search_everywhere(self, image: np.ndarray, scale: float) -> tuple[float, Box | None, float]:
        """Search the whole frame (after a cut, or when the box is lost): coarse at a reduced
        size, then refined around the best place at full size."""
        if not self.usable:
            return 0.0, None, scale
        fh, fw = image.shape[:2]
        f = min(1.0, GLOBAL_SEARCH_WIDTH / fw)
        small = image if f >= 1.0 else cv2.resize(image, (max(1, int(fw * f)), max(1, int(fh * f))), interpolation=cv2.INTER_AREA)
        tpl = self._scaled(scale * f)
        if tpl.shape[0] >= small.shape[0] or tpl.shape[1] >= small.shape[1] or float(tpl.std()) < 1.0:
            return 0.0, None, scale
        scores = cv2.matchTemplate(small.astype(np.float32), tpl, cv2.TM_CCOEFF_NORMED)
        scores = np.nan_to_num(scores, nan=-1.0, posinf=-1.0, neginf=-1.0)
        _, _, _, (px, py) = cv2.minMaxLoc(scores)
        centre = ((px + tpl.shape[1] / 2) / f, (py + tpl.shape[0] / 2) / f)
        return self.search(image, centre, scale, (2.0 / f + 2, 2.0 / f + 2))


def _csrt() -> cv2.Tracker:
    """CSRT with 17 scale steps instead of 33: the box's scale comes from the template search,
    and this halves CSRT's cost."""
    params = cv2.TrackerCSRT_Params()
    params.number_of_scales = 17
    maker = getattr(cv2, "TrackerCSRT_create", None) or cv2.TrackerCSRT.create
    return maker(params)


def _int_box(box: Box, fw: int, fh: int) -> tuple[int, int, int, int]:
    x, y, w, h = box
    x0 = int(round(min(max(0.0, x), fw - 4)))
    y0 = int(round(min(max(0.0, y), fh - 4)))
    return (x0, y0, int(max(4, min(round(w), fw - x0))), int(max(4, min(round(h), fh - y0))))


def _centre(box: Box) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


class BoxFollower:
    """Per-frame tracking state: static until the region changes, then CSRT plus re-anchoring."""

    def __init__(self, first: np.ndarray, box: Box) -> None:
        self.fh, self.fw = first.shape[:2]
        gray = _gray(first)
        self.base = box
        self.anchor = _Anchor(first, box)  # in colour: far fewer look-alikes than in grey
        self.first_region = _crop(gray, box).astype(np.float32)
        self.prev_frame = first
        self.prev_thumb = _thumb(gray)
        self.tracker: cv2.Tracker | None = None
        self.moving = False
        self.box = box
        self.scale = 1.0
        self.velocity = (0.0, 0.0)
        self.reanchors = 0
        self.first_texture = texture(gray, box)
        self.textured = self.first_texture >= TEXTURE_GRADIENT and self.anchor.usable
        self.first_signature = _signature(gray, box)
        self.camera: CameraMotion | None = None
        self.shot_thumb = self.prev_thumb  # the first shot's latest thumbnail
        self.other_shot = False  # after a cut, until the original content is found again

    def _start_tracker(self, frame: np.ndarray, box: Box) -> None:
        self.tracker = _csrt()
        self.tracker.init(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), _int_box(box, self.fw, self.fh))

    def update(self, frame: np.ndarray) -> tuple[Box, float, bool, bool]:
        """(box, confidence, lost, scene_cut) for the next frame."""
        gray = _gray(frame)
        thumb = _thumb(gray)
        cut = _is_cut(thumb, self.prev_thumb)
        self.prev_thumb = thumb
        if not self.moving:
            region = _crop(gray, self.base).astype(np.float32)
            if not cut and region.shape == self.first_region.shape and float(np.mean(np.abs(region - self.first_region))) < STATIC_MEAN_DIFF:
                self.prev_frame = frame
                self.shot_thumb = thumb
                return self.base, 1.0, False, False
            # The region changed: from here on follow it, starting where it was last seen.
            self.moving = True
            if self.textured:
                self._start_tracker(self.prev_frame, self.base)
            else:
                self.camera = CameraMotion(_gray(self.prev_frame))
        self.prev_frame = frame
        if self.textured:
            result = self._follow(frame, gray, cut)
        else:
            result = self._follow_camera(gray, thumb, cut)
        return (*result, cut)

    def _follow_camera(self, gray: np.ndarray, thumb: np.ndarray, cut: bool) -> tuple[Box, float, bool]:
        """A plain box: moved with the camera, and checked against its first appearance."""
        assert self.camera is not None
        motion = self.camera.step(gray)
        if cut:
            self.other_shot = True
        if self.other_shot:
            # another shot: flagged until the first one is back with the box's content in place
            if _correlation(thumb, self.shot_thumb) < SAME_SHOT_CORRELATION:
                return self.box, 0.0, True
            self.other_shot = False
            motion = None  # the shot changed twice: frame-to-frame motion says nothing; stay put
        if motion is not None:
            cx, cy = _centre(self.box)
            nx, ny = motion @ np.array([cx, cy, 1.0])
            zoom = float(np.sqrt(abs(np.linalg.det(motion[:, :2]))))
            w, h = self.box[2] * zoom, self.box[3] * zoom
            self._accept((float(nx - w / 2), float(ny - h / 2), w, h), 1.0, self.scale * zoom)
        now = _signature(gray, self.box)
        if now is None or self.first_signature is None:
            return self.box, 0.0, True  # partly out of view: nothing to check it against
        # Light and exposure may change a plain surface; something in front of it adds structure.
        diff = float(np.mean(np.abs((now - now.mean()) - (self.first_signature - self.first_signature.mean()))))
        covered = texture(gray, self.box) > max(TEXTURE_GRADIENT, TEXTURE_RISE * self.first_texture + 0.3)
        confidence = max(0.0, 1.0 - diff / (2 * PLAIN_MATCH_DIFF))
        if covered or diff > PLAIN_MATCH_DIFF:
            return self.box, min(confidence, LOST_SCORE - 1e-3), True
        self.shot_thumb = thumb
        return self.box, confidence, False

    def _follow(self, frame: np.ndarray, gray: np.ndarray, cut: bool) -> tuple[Box, float, bool]:
        if cut or self.other_shot:
            # Another shot: the tracker's idea of the box belongs to the last one. Only the box's
            # first appearance, found by a whole-frame search, brings the box back.
            self.tracker = None
            score, matched, scale = self._search_everywhere(frame)
            if matched is None:
                self.other_shot = True
                return self.box, max(0.0, score), True
            self.other_shot = False
            self.reanchors += 1
            self._start_tracker(frame, matched)
            self.box, self.velocity = matched, (0.0, 0.0)
            return self._accept(matched, score, scale)
        predicted = (self.box[0] + self.velocity[0], self.box[1] + self.velocity[1], self.box[2], self.box[3])
        if self._leaving(predicted) and self._outside_share(predicted) > LEAVING_SHARE:
            # matching what is left in view is biased towards the frame: the motion is more exact
            if self.tracker is not None:
                self.tracker.update(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            return self._extrapolate(predicted)
        tracked: Box | None = None
        if self.tracker is not None:
            ok, raw = self.tracker.update(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            if ok:
                tracked = tuple(float(v) for v in raw)  # type: ignore[assignment]
        # CSRT's answer is usually within a fraction of the box; the motion prediction less so
        near = (0.3 * self.box[2] + 8, 0.3 * self.box[3] + 8)
        wide = (0.6 * self.box[2] + 8 + abs(self.velocity[0]), 0.6 * self.box[3] + 8 + abs(self.velocity[1]))
        centre = _centre(tracked) if tracked is not None else _centre(predicted)
        score, matched, scale = self.anchor.search(frame, centre, self.scale, near if tracked is not None else wide)
        if score < ANCHOR_SCORE and tracked is not None:
            # the tracker may be the one that is wrong: look around the motion prediction too
            alt = self.anchor.search(frame, _centre(predicted), self.scale, wide)
            if alt[0] > score:
                score, matched, scale = alt
        if score < ANCHOR_SCORE and (tracked is None or score < LOST_SCORE):
            # a jump too big for both (a scroll by a page, a whip pan): look everywhere
            alt = self._search_everywhere(frame)
            if alt[0] > score:
                score, matched, scale = alt
        if matched is not None and score >= ANCHOR_SCORE:
            if tracked is None or np.hypot(*np.subtract(_centre(tracked), _centre(matched))) > 0.15 * max(matched[2], matched[3]):
                self.reanchors += 1
                self._start_tracker(frame, matched)
            return self._accept(matched, score, scale)
        if tracked is not None and score >= LOST_SCORE:
            return self._accept(tracked, score, self.scale)
        if self._leaving(predicted):
            return self._extrapolate(predicted)
        return predicted, max(0.0, score), True

    def _extrapolate(self, predicted: Box) -> tuple[Box, float, bool]:
        """Too little of the box is left in view to match, but it was moving out steadily: keep
        it moving (a name scrolling away must not flash back to the placeholder)."""
        self.box = predicted
        return predicted, EXTRAPOLATED_CONFIDENCE, False

    def _outside_share(self, box: Box) -> float:
        x, y, w, h = box
        inside_w = max(0.0, min(x + w, self.fw) - max(x, 0.0))
        inside_h = max(0.0, min(y + h, self.fh) - max(y, 0.0))
        return 1.0 - inside_w * inside_h / max(w * h, 1e-6)

    def _leaving(self, box: Box) -> bool:
        """Whether ``box`` hangs over a frame edge that the box is moving towards, with some of it
        still in view."""
        x, y, w, h = box
        vx, vy = self.velocity
        if x + w <= 0 or y + h <= 0 or x >= self.fw or y >= self.fh:
            return False
        return (x < 0 and vx < 0) or (y < 0 and vy < 0) or (x + w > self.fw and vx > 0) or (y + h > self.fh and vy > 0)

    def _search_everywhere(self, frame: np.ndarray) -> tuple[float, Box | None, float]:
        """A whole-frame search; with so many places to look, a weak best match is likely chance."""
        score, matched, scale = self.anchor.search_everywhere(frame, self.scale)
        return (score, matched, scale) if score >= ACQUIRE_SCORE else (min(score, LOST_SCORE - 1e-3), None, self.scale)

    def _accept(self, box: Box, score: float, scale: float) -> tuple[Box, float, bool]:
        old = _centre(self.box)
        new = _centre(box)
        self.velocity = (new[0] - old[0], new[1] - old[1])
        self.box, self.scale = box, scale
        return box, float(min(1.0, max(0.0, score))), False


_SG7 = np.array([-2.0, 3.0, 6.0, 7.0, 6.0, 3.0, -2.0]) / 21.0  # Savitzky-Golay, window 7, quadratic


def savgol7(values: np.ndarray) -> np.ndarray:
    """Centred quadratic Savitzky-Golay smoothing (window 7) of each column; the three samples at
    each end come from a quadratic fitted to the first/last seven. A quadratic follows steady
    motion and acceleration exactly, so it removes jitter without lagging behind."""
    n = len(values)
    out = values.astype(np.float64).copy()
    if n < SMOOTH_WINDOW:
        return out
    for c in range(values.shape[1]):
        col = values[:, c].astype(np.float64)
        out[3 : n - 3, c] = np.convolve(col, _SG7[::-1], mode="valid")
        t = np.arange(SMOOTH_WINDOW, dtype=np.float64)
        head = np.polyval(np.polyfit(t, col[:SMOOTH_WINDOW], 2), t[:3])
        tail = np.polyval(np.polyfit(t, col[-SMOOTH_WINDOW:], 2), t[-3:])
        out[:3, c], out[n - 3 :, c] = head, tail
    return out


def _smooth(track: list[Box], lost: list[bool], cuts: list[int], first: int) -> list[Box]:
    """Centred Savitzky-Golay smoothing of centre and size within each continuous piece."""
    out = list(track)
    breaks = {c - first for c in cuts}
    start = 0
    n = len(track)
    for k in range(n + 1):
        if k == n or lost[k] or k in breaks:
            piece = list(range(start, k))
            if len(piece) >= SMOOTH_WINDOW:
                arr = np.array([[b[0] + b[2] / 2, b[1] + b[3] / 2, b[2], b[3]] for b in (track[i] for i in piece)])
                sm = savgol7(arr)
                for i, (cx, cy, w, h) in zip(piece, sm):
                    out[i] = (float(cx - w / 2), float(cy - h / 2), float(w), float(h))
            start = k + 1 if k < n and lost[k] else k
    return out


def _ranges(frames: list[int]) -> str:
    parts = []
    for f in frames:
        if parts and parts[-1][1] == f - 1:
            parts[-1][1] = f
        else:
            parts.append([f, f])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in parts)


def follow_box(frames: Iterator[tuple[int, np.ndarray]], first: int, stop: int, box: Box) -> tuple[list[Box], list[float], list[bool], list[int], bool, int]:
    """Track ``box`` (on frame ``first``) through ``frames``; missing frames repeat the last box, lost."""
    n = stop - first
    boxes: list[Box] = [box] * n
    conf = [0.0] * n
    lost = [True] * n
    cuts: list[int] = []
    follower: BoxFollower | None = None
    for index, frame in frames:
        k = index - first
        if follower is None:
            follower = BoxFollower(frame, box)
            boxes[k], conf[k], lost[k] = box, 1.0, False
            continue
        b, c, is_lost, cut = follower.update(frame)
        boxes[k], conf[k], lost[k] = b, c, is_lost
        if cut:
            cuts.append(index)
    static = follower is None or not follower.moving
    reanchors = follower.reanchors if follower else 0
    if not static:
        boxes = _smooth(boxes, lost, cuts, first)
    return boxes, conf, lost, cuts, static, reanchors


def track_segment(video_uri: str, video: VideoInfo, segment: VisualSegment, out_uri: str) -> Track:
    """Follow the segment's box through its frames; save the track as JSON at ``out_uri``."""
    first, stop = video.frame_span(segment.start_time, segment.end_time)
    box = segment_box(segment, video)
    warnings: list[str] = []
    if not segment.track:
        n = stop - first
        track = Track(
            segment_id=segment.id, first_frame=first, stop_frame=stop, frame_width=video.width,
            frame_height=video.height, boxes=[box] * n, confidence=[1.0] * n, lost=[False] * n, static=True,
        )
    else:
        boxes, conf, lost, cuts, static, reanchors = follow_box(read_frames(video_uri, first, stop), first, stop, box)
        lost_frames = [first + k for k, flag in enumerate(lost) if flag]
        if lost_frames:
            warnings.append(
                f"visual segment {segment.id}: box not found on {len(lost_frames)} of {stop - first} frames "
                f"({_ranges(lost_frames)}); those frames keep the original content"
            )
        if cuts:
            warnings.append(f"visual segment {segment.id}: scene cut at frame(s) {_ranges(cuts)}; box searched for again")
        track = Track(
            segment_id=segment.id, first_frame=first, stop_frame=stop, frame_width=video.width,
            frame_height=video.height, boxes=boxes, confidence=[round(c, 4) for c in conf], lost=lost,
            static=static, scene_cuts=cuts, reanchors=reanchors, warnings=warnings,
        )
    storage.write_text(out_uri, track.model_dump_json())
    return track
