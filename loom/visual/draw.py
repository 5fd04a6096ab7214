"""Draw one recipient's value into a visual segment: per-frame RGBA patches that follow the track.

The new content (a fitted line of text, or a logo) is rendered once at the box's size on its
first frame; on each frame it is warped to the tracked box (position and scale), laid over the
box with the original content removed, and feathered into the frame at the patch's edge.
"""

from __future__ import annotations

import io
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from loom import storage
from loom.edits import PatchSetRef
from loom.errors import InputError
from loom.media.frames import read_frames
from loom.media.patches import Patch, PatchSet
from loom.prepared import PreparedTemplate
from loom.template import VisualSegment
from loom.visual.fonts import font_chain, uncovered
from loom.visual.look import TextLook, sample_text_look
from loom.visual.removal import fit_surface, inpaint, remove_content, ring_mask
from loom.visual.text import InkLine, fit_line
from loom.visual.tracking import Box, Track, load_track

_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")
# Removal reaches this share of the box's smaller side beyond it: text boxes are usually drawn
# with room around the text; a logo's box is often drawn tight around the mark.
TEXT_PAD = 0.04
IMAGE_PAD = 0.1
# The background surface is fitted to the 2 px just outside the removal mask: the pixels that
# must join up with the fill, and the least likely to reach a plate's border or a neighbour.
FIT_RING = 2


@dataclass
class Content:
    """What goes in the box at its base size: premultiplied RGB and alpha, both float32 in [0, 1]."""

    rgb: np.ndarray  # (h, w, 3) premultiplied by alpha
    alpha: np.ndarray  # (h, w)
    info: dict[str, object]


@dataclass
class Geometry:
    """Where one frame's patch goes: the removal mask and the crop around it, in frame pixels."""

    crop: tuple[int, int, int, int]  # x0, y0, x1, y1
    mask: tuple[int, int, int, int]
    ring: int


def parse_color(value: str, field: str) -> tuple[int, int, int]:
    m = _HEX.match(value.strip())
    if not m:
        raise InputError(field, f"{value!r} is not a colour", "write colours as #RRGGBB")
    h = m.group(1)
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def geometry(
    box: Box, base: Box, frame_w: int, frame_h: int, pad_ratio: float = 0.04, motion: tuple[float, float] = (0.0, 0.0)
) -> Geometry:
    """The removal mask (the box plus a pad for anti-aliased edges and for motion blur, which
    smears the old content along the motion) and the crop holding the ring around it."""
    x, y, w, h = box
    scale = math.sqrt(max(w, 1e-3) * max(h, 1e-3) / (max(base[2], 1e-3) * max(base[3], 1e-3)))
    pad = max(1.5, pad_ratio * min(base[2], base[3]) * scale)
    pad_x = pad + 0.5 * abs(motion[0])
    pad_y = pad + 0.5 * abs(motion[1])
    ring = max(3, int(round(0.2 * min(base[2], base[3]) * scale)))
    mx0 = max(0, int(math.floor(x - pad_x)))
    my0 = max(0, int(math.floor(y - pad_y)))
    mx1 = min(frame_w, int(math.ceil(x + w + pad_x)))
    my1 = min(frame_h, int(math.ceil(y + h + pad_y)))
    crop = (max(0, mx0 - ring), max(0, my0 - ring), min(frame_w, mx1 + ring), min(frame_h, my1 + ring))
    return Geometry(crop, (mx0, my0, mx1, my1), ring)


def _mask_in_crop(g: Geometry) -> np.ndarray:
    cx0, cy0, cx1, cy1 = g.crop
    mx0, my0, mx1, my1 = g.mask
    mask = np.zeros((cy1 - cy0, cx1 - cx0), bool)
    mask[my0 - cy0 : my1 - cy0, mx0 - cx0 : mx1 - cx0] = True
    return mask


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


def _base_canvas(base: Box) -> tuple[int, int]:
    return max(1, int(math.ceil(base[2]))), max(1, int(math.ceil(base[3])))


# ---------------------------------------------------------------- text


def _font_path(segment: VisualSegment) -> str | None:
    font = segment.style.font if segment.style else None
    if not font:
        return None
    field = f"visual_segments[{segment.id}].style.font"
    if not storage.exists(font):
        raise InputError(field, f"no font file at {font}", "give a .ttf/.otf path or gs:// URI")
    if not storage.is_remote(font):
        return font
    data = storage.read_bytes(font)
    tmp = Path(tempfile.gettempdir()) / f"loom-font-{abs(hash(font))}{Path(font).suffix or '.ttf'}"
    tmp.write_bytes(data)
    return str(tmp)


def _place_x(line: InkLine, width: float, pad: float, align: str) -> float:
    if align == "left":
        return pad
    if align == "right":
        return width - pad - line.width
    return (width - line.width) / 2


def text_content(value: str, segment: VisualSegment, first_frame: np.ndarray, base: Box) -> Content:
    """The new text at the base box size, looking like the text it replaces."""
    chain = font_chain(_font_path(segment))
    style = segment.style
    g = geometry(base, base, first_frame.shape[1], first_frame.shape[0])
    cx0, cy0, cx1, cy1 = g.crop
    crop = first_frame[cy0:cy1, cx0:cx1]
    cleaned = remove_content(crop, _mask_in_crop(g), FIT_RING).image
    bx0, by0 = int(round(base[0])) - cx0, int(round(base[1])) - cy0
    bw, bh = _base_canvas(base)
    look: TextLook = sample_text_look(
        crop[by0 : by0 + bh, bx0 : bx0 + bw], cleaned[by0 : by0 + bh, bx0 : bx0 + bw], chain
    )
    color = parse_color(style.color, f"visual_segments[{segment.id}].style.color") if style and style.color else look.color
    bold = (style.weight == "bold") if style and style.weight else look.bold
    align = style.align if style and "align" in style.model_fields_set else look.align
    pad_x = max(1.5, 0.06 * min(bw, bh))
    pad_y = max(1.0, 0.06 * bh)
    line = fit_line(value, bw - 2 * pad_x, bh - 2 * pad_y, look.cap_height, chain, bold)
    alpha = np.zeros((bh, bw), np.float32)
    if line.width and line.height:
        left = _place_x(line, bw, pad_x, align)
        top = look.baseline - line.baseline  # the new text sits on the old baseline...
        top = min(max(top, pad_y), bh - pad_y - line.height)  # ...unless that would leave the box
        m = np.float32([[1, 0, left], [0, 1, top]])
        alpha = cv2.warpAffine(line.alpha, m, (bw, bh), flags=cv2.INTER_LINEAR, borderValue=0)
    rgb = alpha[..., None] * (np.asarray(color, np.float32) / 255.0)
    missing = uncovered(value, chain)
    info: dict[str, object] = {
        "font_size": line.size,
        "scale": round(line.scale, 4),
        "color": "#%02x%02x%02x" % tuple(color),
        "bold": bold,
        "align": align,
        "original_text_found": look.found,
        "original_cap_height": round(look.cap_height, 2),
        "fonts": sorted({r.face.name for r in line.runs if r.face is not None}),
    }
    if missing:
        info["warnings"] = [f"visual segment {segment.id}: no font has {''.join(missing)!r}; left out"]
    return Content(rgb.astype(np.float32), alpha, info)


# ---------------------------------------------------------------- image


def load_logo(value: str, field: str) -> np.ndarray:
    """The logo at ``value`` (path, gs:// or https://) as RGBA uint8; InputError if unusable."""
    fix = "give a PNG or JPEG as a local path, gs:// or https:// URI"
    if not value or not value.strip():
        raise InputError(field, "logo is empty", fix)
    try:
        data = storage.read_bytes(value.strip())
    except Exception as exc:  # any failure to fetch a user-given URI is bad input for that row
        raise InputError(field, f"cannot read logo {value!r} ({type(exc).__name__})", fix) from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            rgba = np.asarray(img.convert("RGBA"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise InputError(field, f"logo {value!r} is not an image that can be read", fix) from None
    if rgba.shape[0] < 1 or rgba.shape[1] < 1:
        raise InputError(field, f"logo {value!r} is empty", fix)
    return rgba


def image_content(logo: np.ndarray, segment: VisualSegment, base: Box) -> Content:
    """The logo (RGBA) fitted into the base box (keeping its aspect), its edges feathered."""
    bw, bh = _base_canvas(base)
    pad = max(1.0, 0.04 * min(bw, bh))
    lh, lw = logo.shape[:2]
    if segment.image_fit == "cover":
        scale = max(bw / lw, bh / lh)
    else:
        scale = min((bw - 2 * pad) / lw, (bh - 2 * pad) / lh)
    tw, th = max(1, int(round(lw * scale))), max(1, int(round(lh * scale)))
    rgba = logo.astype(np.float32) / 255.0
    premult = np.concatenate([rgba[..., :3] * rgba[..., 3:4], rgba[..., 3:4]], axis=2)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = np.clip(cv2.resize(premult, (tw, th), interpolation=interp), 0.0, 1.0)
    # Feather the image's own edges (a JPEG is a hard rectangle otherwise).
    feather = max(1.0, 0.03 * min(tw, th))
    yy = np.minimum(np.arange(th), np.arange(th)[::-1]).astype(np.float32) + 0.5
    xx = np.minimum(np.arange(tw), np.arange(tw)[::-1]).astype(np.float32) + 0.5
    ramp = np.minimum(np.clip(yy / feather, 0, 1)[:, None], np.clip(xx / feather, 0, 1)[None, :])
    resized *= ramp[..., None]
    left, top = (bw - tw) / 2, (bh - th) / 2
    m = np.float32([[1, 0, left], [0, 1, top]])
    placed = cv2.warpAffine(resized, m, (bw, bh), flags=cv2.INTER_LINEAR, borderValue=0)
    info = {"logo_size": [lw, lh], "placed": [round(left, 2), round(top, 2), tw, th], "fit": segment.image_fit}
    return Content(placed[..., :3].copy(), placed[..., 3].copy(), info)


# ---------------------------------------------------------------- frames


class BoxCleaner:
    """Removes the original content from the box on each frame.

    Flat or gradient surroundings are refitted on every frame (cheap, and it follows lighting).
    Textured ones are inpainted once, on the first frame, into a clean plate that then moves and
    scales with the box (the surface under a planted mark moves with it), with each frame's
    brightness offset measured on the ring around the box: steady, and a fraction of the cost.
    """

    def __init__(self, first_frame: np.ndarray, base: Box, background: tuple[int, int, int] | None = None) -> None:
        self.first_frame = first_frame
        self.base = base
        self.background = background
        self._plate: tuple[np.ndarray, np.ndarray, tuple[int, int]] | None = None

    def _clean_plate(self) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        if self._plate is None:
            fh, fw = self.first_frame.shape[:2]
            g = geometry(self.base, self.base, fw, fh)
            cx0, cy0, cx1, cy1 = g.crop
            crop = self.first_frame[cy0:cy1, cx0:cx1]
            plate = inpaint(crop, _mask_in_crop(g))
            self._plate = (crop.astype(np.float32), plate.astype(np.float32), (cx0, cy0))
        return self._plate

    def clean(self, crop: np.ndarray, mask: np.ndarray, box: Box, crop_xy: tuple[int, int], ring: int, seed: int) -> tuple[np.ndarray, str]:
        if self.background is not None:
            out = crop.copy()
            out[mask] = self.background
            return out, "style"
        flat = fit_surface(crop, mask, ring, seed)
        if flat is not None:
            return flat.image, flat.method
        original, plate, (ox, oy) = self._clean_plate()
        x, y, w, h = box
        sx, sy = w / self.base[2], h / self.base[3]
        m = np.float32(
            [[sx, 0, x - crop_xy[0] + sx * (ox - self.base[0])], [0, sy, y - crop_xy[1] + sy * (oy - self.base[1])]]
        )
        size = (crop.shape[1], crop.shape[0])
        plate_w = cv2.warpAffine(plate, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        orig_w = cv2.warpAffine(original, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        around = ring_mask(mask, max(2, ring))
        offset = np.median(crop[around].astype(np.float32) - orig_w[around], axis=0) if around.any() else 0.0
        out = crop.copy()
        out[mask] = np.clip(plate_w[mask] + offset + 0.5, 0, 255).astype(np.uint8)
        return out, "plate"


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
    mask = _mask_in_crop(g)
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
        content = image_content(logo, segment, base)
    else:
        content = text_content(value, segment, first_frame, base)
    style = segment.style
    background = (
        parse_color(style.background, f"visual_segments[{segment.id}].style.background")
        if segment.segment_type == "text" and style and style.background
        else None
    )
    cleaner = BoxCleaner(first_frame, base, background)
    patches = PatchSet()
    methods: dict[str, int] = {}
    for index, frame in read_frames(prepared.working_video_uri, track.first_frame, track.stop_frame):
        box = track.box_at(index)
        if box is None:
            continue
        pad = IMAGE_PAD if segment.segment_type == "image" else TEXT_PAD
        patch, method = patch_for_frame(frame, box, base, content, cleaner, index, pad, _motion(track, index))
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
