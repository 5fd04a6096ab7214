"""Visual effects: the built-in content replacements and any ``better_loom.visual`` plugin.

A plugin is a class with ``apply(frame, box, params) -> frame``: ``frame`` an RGB ``(h, w, 3)``
uint8 copy of one tracked frame, ``box`` ``(x, y, w, h)`` in whole pixels, ``params`` the
segment's ``params`` (checked by the plugin's ``Params`` pydantic model when it has one) plus the
recipient's ``value`` when the segment names a placeholder. It runs on every frame where the box
was tracked (a lost frame is left untouched and flagged), and only the pixels it changed inside
the box become the patch, so nothing outside the box can change and the smart cut, the preview
and the record work as for text and images.

The built-ins ``text`` and ``image`` register through the same group; they replace the box's
content over a clean plate made at prepare time (``draw``), which a plugin may also offer.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from loom.edits import PatchSetRef
from loom.errors import RecipientFailed
from loom.media.frames import read_frames
from loom.media.patches import Patch, PatchSet
from loom.prepared import PreparedTemplate
from loom.template import VisualSegment
from loom.visual.draw import draw_segment
from loom.visual.tracking import load_track


class _ContentReplacement:
    replaces_content = True  # prepare removes the original once (clean plate); recipients draw over it

    def draw(self, prepared: PreparedTemplate, segment: VisualSegment, value: str | None, out_uri: str, in_memory: bool = False) -> PatchSetRef:
        return draw_segment(prepared, segment, value or "", out_uri, in_memory=in_memory)


class TextReplacement(_ContentReplacement):
    """``text``: the recipient's value written in the box, in the look of the text it replaces."""


class ImageReplacement(_ContentReplacement):
    """``image``: the recipient's logo (a path or URI) fitted into the box."""


def pixel_box(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """A tracked box as whole pixels inside the frame: ``(x, y, w, h)``."""
    x, y, w, h = box
    x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
    x1, y1 = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def effect_patch(effect: Any, name: str, frame: np.ndarray, box: tuple[int, int, int, int], params: dict[str, Any]) -> Patch | None:
    """The pixels ``effect`` changed inside ``box`` as an opaque patch (transparent elsewhere)."""
    out = effect.apply(frame.copy(), box, dict(params))
    if not isinstance(out, np.ndarray) or out.shape != frame.shape or out.dtype != np.uint8:
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise RecipientFailed(f"visual effect {name} returned {got} for a {frame.shape} uint8 frame")
    x, y, w, h = box
    new, old = out[y : y + h, x : x + w], frame[y : y + h, x : x + w]
    changed = np.any(new != old, axis=2)
    if not changed.any():
        return None
    rgba = np.dstack([new, changed.astype(np.uint8) * 255])
    return Patch(x=x, y=y, rgba=np.ascontiguousarray(rgba))


def draw_with_effect(effect: Any, prepared: PreparedTemplate, segment: VisualSegment, value: str | None, out_uri: str) -> PatchSetRef:
    """Patches of a plugin effect on every tracked frame of the segment, written to ``out_uri``."""
    started = time.perf_counter()
    if segment.id not in prepared.tracks:
        raise RuntimeError(f"prepared template has no track for visual segment {segment.id!r}")
    track = load_track(prepared.tracks[segment.id])
    params = dict(segment.params or {})
    if value is not None:
        params["value"] = value
    patches = PatchSet()
    for index, frame in read_frames(prepared.working_video_uri, track.first_frame, track.stop_frame):
        tracked = track.box_at(index)
        if tracked is None:
            continue  # lost: unsure means untouched
        box = pixel_box(tracked, frame.shape[1], frame.shape[0])
        if box[2] == 0 or box[3] == 0:
            continue
        patch = effect_patch(effect, segment.segment_type, frame, box, params)
        if patch is not None:
            patches.add(index, patch)
    patches.save(out_uri)
    unedited = sum(track.lost)
    qa: dict[str, object] = {
        "effect": segment.segment_type,
        "static": track.static,
        "frames_unedited": unedited,
        "flagged": unedited > 0,
        "min_confidence": round(min(track.confidence), 4) if track.confidence else None,
        "seconds": round(time.perf_counter() - started, 3),
        "warnings": [],  # the track's own are in the prepared template's QA already
    }
    return PatchSetRef(
        segment_id=segment.id, kind="visual", uri=out_uri, first_frame=track.first_frame,
        stop_frame=track.stop_frame, frames_patched=len(patches), qa=qa,
    )
