"""Draw one recipient's value into a visual segment: per-frame RGBA patches that follow the track.

The new content (a fitted line of text, or a logo) is rendered once at the box's size; on each
frame it is warped to the tracked box (position and scale) and laid over the box with the original
content removed, feathered into the frame at the patch's edge. The removal is recipient-independent:
prepare stores it as a clean plate (``plates``), so a recipient only lays its value over the plate;
without one (a template prepared by older code) it is computed here from the decoded frames.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from loom.edits import PatchSetRef
from loom.input_policy import InputPolicy
from loom.media.frames import read_frames
from loom.media.patches import DeferredPatches, Patch, PatchSet, hand_over
from loom.prepared import PreparedTemplate
from loom.template import VisualSegment
from loom.visual.content import Content, measure_text_look, text_content
from loom.visual.logo import load_logo, logo_content
from loom.visual.plates import CleanPlate, SegmentCleaner, load_clean_plate
from loom.visual.removal import Box
from loom.visual.tracking import Track, load_track


def _warp(content: Content, box: Box, base: Box, crop: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The base-size content moved and scaled onto ``box``, in crop coordinates."""
    x, y, w, h = box
    sx, sy = w / base[2], h / base[3]
    m = np.float32([[sx, 0, x - crop[0]], [0, sy, y - crop[1]]])
    size = (crop[2] - crop[0], crop[3] - crop[1])
    rgb = cv2.warpAffine(content.rgb, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = cv2.warpAffine(content.alpha, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return rgb, alpha


def lay_content(cleaned: Patch, content: Content, box: Box, base: Box) -> Patch:
    """The new content over a cleaned crop (its alpha, the feathered edge, is kept). Only the
    box's pixels (and one for interpolation) are blended: elsewhere the content is empty.
    OpenCV does the per-pixel arithmetic: it works on whole pixels, where numpy would loop over
    the short colour axis (several times slower at these sizes)."""
    h, w = cleaned.rgba.shape[:2]
    x, y, bw, bh = box
    rx0, ry0 = max(0, math.floor(x) - cleaned.x - 1), max(0, math.floor(y) - cleaned.y - 1)
    rx1, ry1 = min(w, math.ceil(x + bw) - cleaned.x + 2), min(h, math.ceil(y + bh) - cleaned.y + 2)
    rgba = cleaned.rgba.copy()
    if rx1 > rx0 and ry1 > ry0:
        ox, oy = cleaned.x + rx0, cleaned.y + ry0
        rgb, alpha = _warp(content, box, base, (ox, oy, cleaned.x + rx1, cleaned.y + ry1))
        region = rgba[ry0:ry1, rx0:rx1]
        under = cv2.cvtColor(region, cv2.COLOR_RGBA2RGB)
        keep = cv2.cvtColor(1.0 - alpha, cv2.COLOR_GRAY2RGB)
        # under * (1 - alpha) + content * 255, rounded and saturated to 8 bits
        laid = cv2.convertScaleAbs(cv2.scaleAdd(rgb, 255.0, cv2.multiply(under, keep, dtype=cv2.CV_32F)))
        out = cv2.cvtColor(laid, cv2.COLOR_RGB2RGBA)
        out[..., 3] = region[..., 3]
        region[...] = out
    return Patch(x=cleaned.x, y=cleaned.y, rgba=rgba)


def _first_frame(prepared: PreparedTemplate, track: Track) -> np.ndarray:
    for _, frame in read_frames(prepared.working_video_uri, track.first_frame, track.first_frame + 1):
        return frame
    raise RuntimeError(f"frame {track.first_frame} of {prepared.working_video_uri} could not be decoded")


def _stored_plate(prepared: PreparedTemplate, segment: VisualSegment, track: Track) -> CleanPlate | None:
    uri = prepared.clean_plates.get(segment.id)
    if uri is None:
        return None
    plate = load_clean_plate(uri, segment.id, track)
    if plate is not None and segment.segment_type == "text" and plate.look is None:
        return None
    return plate


def _patches_from_plate(plate: CleanPlate, track: Track, content: Content) -> PatchSet:
    """Every tracked frame's patch laid now (``_deferred_from_plate`` lays them on demand)."""
    deferred = _deferred_from_plate(plate, track, content)
    patches = PatchSet()
    for index in deferred.indices:
        for patch in deferred.patches_at(index):
            patches.add(index, patch)
    return patches


def _patches_by_removal(
    prepared: PreparedTemplate, segment: VisualSegment, track: Track, first_frame: np.ndarray, content: Content
) -> tuple[PatchSet, dict[str, int]]:
    """The fallback: decode the span and remove the original on every frame, as prepare would."""
    cleaner = SegmentCleaner(segment, track, first_frame)
    patches = PatchSet()
    methods: dict[str, int] = {}
    for index, frame in read_frames(prepared.working_video_uri, track.first_frame, track.stop_frame):
        box = track.box_at(index)
        if box is None:
            continue
        cleaned, method = cleaner.clean(frame, index, box)
        methods[method] = methods.get(method, 0) + 1
        if cleaned is not None:
            patches.add(index, lay_content(cleaned, content, box, track.base_box))
    return patches, methods


def _deferred_from_plate(plate: CleanPlate, track: Track, content: Content) -> DeferredPatches:
    """The new content laid over each tracked frame's plate, when the renderer asks for that frame."""
    boxes = {index: track.box_at(index) for index in plate.frames}
    boxes = {index: box for index, box in boxes.items() if box is not None}

    def make(index: int) -> list[Patch]:
        return [lay_content(plate.frames[index], content, boxes[index], track.base_box)]

    return DeferredPatches(boxes, make)


def draw_segment(
    prepared: PreparedTemplate, segment: VisualSegment, value: str, out_uri: str, in_memory: bool = False
) -> PatchSetRef:
    """Patches that replace the segment's content with ``value`` (text, or a logo URI) on every
    tracked frame; frames where the track was lost are left untouched.

    ``in_memory``: where the template has a clean plate, hand the patches over to a render in this
    process instead of writing ``out_uri``; each frame's patch is then laid as the encoder takes
    the frame (``loom.media.patches.DeferredPatches``)."""
    if segment.id not in prepared.tracks:
        raise RuntimeError(f"prepared template has no track for visual segment {segment.id!r}")
    track = load_track(prepared.tracks[segment.id])
    base = track.base_box
    logo = (  # fail early; the value's location is held to the input policy again as it is read
        load_logo(value, segment.placeholder_key, InputPolicy.for_template(prepared.template))
        if segment.segment_type == "image"
        else None
    )
    plate = _stored_plate(prepared, segment, track)
    first_frame = _first_frame(prepared, track) if plate is None else None
    if logo is not None:
        content = logo_content(logo, segment, base)
    else:
        look = plate.look if plate is not None else measure_text_look(segment, first_frame, base)  # type: ignore[arg-type]
        content = text_content(" ".join(value.split()), segment, look, base)  # type: ignore[arg-type]
    patches: PatchSet | DeferredPatches
    if plate is not None and in_memory:
        patches, methods = _deferred_from_plate(plate, track, content), dict(plate.methods)
        hand_over(out_uri, patches)
    elif plate is not None:
        patches, methods = _patches_from_plate(plate, track, content), dict(plate.methods)
        patches.save(out_uri)
    else:
        patches, methods = _patches_by_removal(prepared, segment, track, first_frame, content)  # type: ignore[arg-type]
        patches.save(out_uri)
    unedited = sum(track.lost)
    qa: dict[str, object] = dict(content.info)
    qa.update(
        {
            "static": track.static,
            "removal": methods,
            "clean_plate": plate is not None,
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
