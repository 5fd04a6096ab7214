"""Clean plates: each tracked frame's box with the original content removed, made once per template.

Removing the original (a surface fit per frame, or inpainting) costs far more than drawing the new
value, and it is the same for every recipient. ``make_clean_plate`` runs it once at prepare and
stores, per tracked frame, the cleaned crop around the box with the patch's feathered edge as its
alpha, plus what was measured of the original text (its look). ``draw`` then only lays each
recipient's value over the plate: no frames are decoded and nothing is removed again.

A plate file is one ``.npz``: ``index`` (rows of frame, x, y), one ``f<frame>`` RGBA uint8 array
per frame, and ``meta`` (JSON bytes: format, segment, span, removal methods, text look).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import cv2
import numpy as np

from loom import storage
from loom.media.frames import read_frames
from loom.media.patches import Patch, pack_patches, read_npz, unpack_patches, write_npz
from loom.template import VisualSegment
from loom.visual.content import look_from_dict, look_to_dict, measure_text_look, parse_color
from loom.visual.look import TextLook
from loom.visual.removal import FIT_RING, IMAGE_PAD, TEXT_PAD, Box, BoxCleaner, geometry, mask_in_crop
from loom.visual.tracking import Track

# Bump when a plate's pixels or meta change meaning: older plates are then ignored (recomputed).
PLATE_FORMAT = 1

# Camera footage blurs a moving mark by up to half its per-frame motion (a 180-degree shutter),
# so removal reaches that much further along the motion; screen recordings do not blur.
IMAGE_BLUR = 0.5
TEXT_BLUR = 0.2


@dataclass
class CleanPlate:
    """Per tracked frame: the crop around the box with the original removed (RGB) and the patch's
    feathered edge (A), placed at (x, y) in frame pixels."""

    frames: dict[int, Patch] = field(default_factory=dict)
    methods: dict[str, int] = field(default_factory=dict)  # removal method -> frames
    look: TextLook | None = None  # the original text's look (text segments)
    first_frame: int = 0
    stop_frame: int = 0


def feather(mask: np.ndarray, ring: int) -> np.ndarray:
    """Alpha 1 over the mask and half the ring, fading to 0 at the crop's edge. Where the frame's
    edge cut the crop the mask reaches the edge, so the patch stays opaque there (no fade in)."""
    dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3)
    half = max(1.0, ring / 2.0)
    return np.clip(1.0 - (dist - half) / half, 0.0, 1.0).astype(np.float32)


def motion_at(track: Track, frame: int) -> tuple[float, float]:
    """The box centre's displacement per frame around ``frame`` (0 where unknown)."""
    k = frame - track.first_frame
    lo = k - 1 if k >= 1 and not track.lost[k - 1] else k
    hi = k + 1 if k + 1 < len(track.boxes) and not track.lost[k + 1] else k
    if hi == lo:
        return (0.0, 0.0)
    a, b = track.boxes[lo], track.boxes[hi]
    return ((b[0] + b[2] / 2 - a[0] - a[2] / 2) / (hi - lo), (b[1] + b[3] / 2 - a[1] - a[3] / 2) / (hi - lo))


class SegmentCleaner:
    """Removes a segment's original content frame by frame, the same way for every caller."""

    def __init__(self, segment: VisualSegment, track: Track, first_frame: np.ndarray) -> None:
        style = segment.style
        background = (
            parse_color(style.background, f"visual_segments[{segment.id}].style.background")
            if segment.segment_type == "text" and style and style.background
            else None
        )
        self.track = track
        self.base = track.base_box
        self.pad, blur = (IMAGE_PAD, IMAGE_BLUR) if segment.segment_type == "image" else (TEXT_PAD, TEXT_BLUR)
        self.blur_pads = [tuple(abs(v) * blur for v in motion_at(track, i)) for i in range(track.first_frame, track.stop_frame)]
        self.widest = (max((p[0] for p in self.blur_pads), default=0.0), max((p[1] for p in self.blur_pads), default=0.0))
        self.background = background
        self.cleaner = BoxCleaner(first_frame, self.base, background, self.pad, self.widest)
        self.shot = 0

    def _shot_of(self, index: int) -> int:
        return sum(1 for cut in self.track.scene_cuts if cut <= index)

    def clean(self, frame: np.ndarray, index: int, box: Box) -> tuple[Patch | None, str]:
        """The crop around ``box`` with the original removed, its alpha the patch's feathered
        edge; None when the box lies wholly outside the frame."""
        shot = self._shot_of(index)
        if shot != self.shot:
            # A plate belongs to one shot: where the box is found again in another, what lies
            # around it there is learnt afresh from that shot's first frame with the box.
            self.shot, self.base = shot, box
            self.cleaner = BoxCleaner(frame, box, self.background, self.pad, self.widest)
        fh, fw = frame.shape[:2]
        g = geometry(box, self.base, fw, fh, self.pad, self.blur_pads[index - self.track.first_frame])  # type: ignore[arg-type]
        cx0, cy0, cx1, cy1 = g.crop
        mx0, my0, mx1, my1 = g.mask
        if mx1 <= mx0 or my1 <= my0:
            return None, "outside"
        mask = mask_in_crop(g)
        cleaned, method = self.cleaner.clean(frame[cy0:cy1, cx0:cx1], mask, box, (cx0, cy0), FIT_RING, index)
        edge = np.clip(feather(mask, g.ring) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Patch(x=cx0, y=cy0, rgba=np.dstack([cleaned, edge])), method


def make_clean_plate(video_uri: str, segment: VisualSegment, track: Track, out_uri: str) -> str:
    """Remove the segment's original content from every tracked frame once and store it (prepare)."""
    plate = CleanPlate(first_frame=track.first_frame, stop_frame=track.stop_frame)
    cleaner: SegmentCleaner | None = None
    for index, frame in read_frames(video_uri, track.first_frame, track.stop_frame):
        if cleaner is None:
            if index != track.first_frame:
                break  # the first frame is the plate's reference; without it, draw recomputes
            cleaner = SegmentCleaner(segment, track, frame)
            if segment.segment_type == "text":
                plate.look = measure_text_look(segment, frame, track.base_box)
        box = track.box_at(index)
        if box is None:
            continue
        patch, method = cleaner.clean(frame, index, box)
        plate.methods[method] = plate.methods.get(method, 0) + 1
        if patch is not None:
            plate.frames[index] = patch
    if cleaner is None:
        raise RuntimeError(f"frame {track.first_frame} of {video_uri} could not be decoded")
    return save_clean_plate(plate, segment.id, out_uri)


def save_clean_plate(plate: CleanPlate, segment_id: str, uri: str) -> str:
    meta = {
        "format": PLATE_FORMAT,
        "segment_id": segment_id,
        "first_frame": plate.first_frame,
        "stop_frame": plate.stop_frame,
        "methods": plate.methods,
        "look": look_to_dict(plate.look) if plate.look is not None else None,
    }
    arrays = {"meta": np.frombuffer(json.dumps(meta, default=_plain).encode(), np.uint8)}
    arrays.update(pack_patches(sorted(plate.frames.items(), key=lambda item: item[0])))
    return write_npz(uri, arrays)


def _plain(value: object) -> object:
    """numpy scalars (from measuring) as plain JSON numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def load_clean_plate(uri: str, segment_id: str, track: Track) -> CleanPlate | None:
    """The stored plate, or None when it is missing, of another format or made for another span
    (the caller then removes the original itself)."""
    if not storage.exists(uri):
        return None
    data = read_npz(uri)
    meta = json.loads(np.asarray(data["meta"]).tobytes().decode())
    if (
        meta.get("format") != PLATE_FORMAT
        or meta.get("segment_id") != segment_id
        or (meta.get("first_frame"), meta.get("stop_frame")) != (track.first_frame, track.stop_frame)
    ):
        return None
    plate = CleanPlate(
        methods={str(k): int(v) for k, v in meta["methods"].items()},
        look=look_from_dict(meta["look"]) if meta.get("look") is not None else None,
        first_frame=int(meta["first_frame"]),
        stop_frame=int(meta["stop_frame"]),
    )
    if "layout" in data:
        plate.frames.update(unpack_patches(data["layout"], data["pixels"]))
    else:  # one array per frame (plates written before patches were packed)
        for frame, x, y in data["index"].tolist():
            plate.frames[frame] = Patch(x=x, y=y, rgba=data[f"f{frame}"])
    return plate
