"""Draw one recipient's value into a visual segment: per-frame RGBA patches that follow the track.

The new content (a fitted line of text, or a logo) is rendered once at the box's size on its
first frame; on each frame it is warped to the tracked box (position and scale), laid over the
box with the original content removed, and feathered into the frame at the patch's edge.
"""

from __future__ import annotations

import cv2
import numpy as np

from loom.edits import PatchSetRef
from loom.media.frames import read_frames
from loom.media.patches import Patch, PatchSet
from loom.prepared import PreparedTemplate
from loom.template import VisualSegment
from loom.visual.content import Content, parse_color, text_content
from loom.visual.logo import load_logo, logo_content
from loom.visual.removal import FIT_RING, IMAGE_PAD, TEXT_PAD, Box, BoxCleaner, geometry, mask_in_crop
from loom.visual.tracking import Track, load_track

# Camera footage blurs a moving mark by up to half its per-frame motion (a 180-degree shutter),
# so removal reaches that much further along the motion; screen recordings do not blur.
IMAGE_BLUR = 0.5
TEXT_BLUR = 0.2


def _feather(mask: np.ndarray, ring: int) -> np.ndarray:
    """Alpha 1 over the mask and half the ring, fading to 0 at the crop's edge. Where the frame's
    edge cut the crop the mask reaches the edge, so the patch stays opaque there (no fade in)."""
    dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3)
    half = max(1.0, ring / 2.0)
    return np.clip(1.0 - (dist - half) / half, 0.0, 1.0).astype(np.float32)


def _warp(content: Content, box: Box, base: Box, crop: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The base-size content moved and scaled onto ``box``, in crop coordinates."""
    x, y, w, h = box
    sx, sy = w / base[2], h / base[3]
    m = np.float32([[sx, 0, x - crop[0]], [0, sy, y - crop[1]]])
    size = (crop[2] - crop[0], crop[3] - crop[1])
    rgb = cv2.warpAffine(content.rgb, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = cv2.warpAffine(content.alpha, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return rgb, alpha


def patch_for_frame(
    frame: np.ndarray,
    box: Box,
    base: Box,
    content: Content,
    cleaner: BoxCleaner,
    seed: int = 0,
    pad_ratio: float = 0.04,
    motion: tuple[float, float] = (0.0, 0.0),
) -> tuple[Patch | None, str]:
    """One RGBA patch: the box's content removed, the new content laid over, edges feathered.
    None when the box lies wholly outside the frame."""
    fh, fw = frame.shape[:2]
    g = geometry(box, base, fw, fh, pad_ratio, motion)
    cx0, cy0, cx1, cy1 = g.crop
    mx0, my0, mx1, my1 = g.mask
    if mx1 <= mx0 or my1 <= my0:
        return None, "outside"
    crop = frame[cy0:cy1, cx0:cx1]
    mask = mask_in_crop(g)
    cleaned, method = cleaner.clean(crop, mask, box, (cx0, cy0), FIT_RING, seed)
    rgb, alpha = _warp(content, box, base, g.crop)
    out = cleaned.astype(np.float32) / 255.0 * (1.0 - alpha[..., None]) + rgb
    edge = _feather(mask, g.ring)
    rgba = np.dstack([np.clip(out * 255.0 + 0.5, 0, 255), np.clip(edge * 255.0 + 0.5, 0, 255)]).astype(np.uint8)
    return Patch(x=cx0, y=cy0, rgba=rgba), method


def _motion(track: Track, frame: int) -> tuple[float, float]:
    """The box centre's displacement per frame around ``frame`` (0 where unknown)."""
    k = frame - track.first_frame
    lo = k - 1 if k >= 1 and not track.lost[k - 1] else k
    hi = k + 1 if k + 1 < len(track.boxes) and not track.lost[k + 1] else k
    if hi == lo:
        return (0.0, 0.0)
    a, b = track.boxes[lo], track.boxes[hi]
    return ((b[0] + b[2] / 2 - a[0] - a[2] / 2) / (hi - lo), (b[1] + b[3] / 2 - a[1] - a[3] / 2) / (hi - lo))


def _first_frame(prepared: PreparedTemplate, track: Track) -> np.ndarray:
    for _, frame in read_frames(prepared.working_video_uri, track.first_frame, track.first_frame + 1):
        return frame
    raise RuntimeError(f"frame {track.first_frame} of {prepared.working_video_uri} could not be decoded")


def draw_segment(prepared: PreparedTemplate, segment: VisualSegment, value: str, out_uri: str) -> PatchSetRef:
    """Patches that replace the segment's content with ``value`` (text, or a logo URI) on every
    tracked frame; frames where the track was lost are left untouched."""
    if segment.id not in prepared.tracks:
        raise RuntimeError(f"prepared template has no track for visual segment {segment.id!r}")
    track = load_track(prepared.tracks[segment.id])
    base = track.base_box
    logo = load_logo(value, segment.placeholder_key) if segment.segment_type == "image" else None  # fail early
    first_frame = _first_frame(prepared, track)
    if logo is not None:
        content = logo_content(logo, segment, base)
    else:
        content = text_content(" ".join(value.split()), segment, first_frame, base)
    style = segment.style
    background = (
        parse_color(style.background, f"visual_segments[{segment.id}].style.background")
        if segment.segment_type == "text" and style and style.background
        else None
    )
    pad, blur = (IMAGE_PAD, IMAGE_BLUR) if segment.segment_type == "image" else (TEXT_PAD, TEXT_BLUR)
    blur_pads = [tuple(abs(v) * blur for v in _motion(track, i)) for i in range(track.first_frame, track.stop_frame)]
    widest = (max((p[0] for p in blur_pads), default=0.0), max((p[1] for p in blur_pads), default=0.0))
    cleaner = BoxCleaner(first_frame, base, background, pad, widest)
    patches = PatchSet()
    methods: dict[str, int] = {}
    for index, frame in read_frames(prepared.working_video_uri, track.first_frame, track.stop_frame):
        box = track.box_at(index)
        if box is None:
            continue
        motion = blur_pads[index - track.first_frame]
        patch, method = patch_for_frame(frame, box, base, content, cleaner, index, pad, motion)  # type: ignore[arg-type]
        methods[method] = methods.get(method, 0) + 1
        if patch is not None:
            patches.add(index, patch)
    patches.save(out_uri)
    unedited = sum(track.lost)
    qa: dict[str, object] = dict(content.info)
    qa.update(
        {
            "static": track.static,
            "removal": methods,
            "frames_unedited": unedited,
            "flagged": unedited > 0,
            "min_confidence": round(min(track.confidence), 4) if track.confidence else None,
        }
    )
    qa.setdefault("warnings", [])
    return PatchSetRef(
        segment_id=segment.id,
        kind="visual",
        uri=out_uri,
        first_frame=track.first_frame,
        stop_frame=track.stop_frame,
        frames_patched=len(patches),
        qa=qa,
    )
