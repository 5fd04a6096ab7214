"""The new content of a box at its base size: a line of text that looks like the one it
replaces, or a logo fitted inside. Rendered once per segment; ``draw`` warps it onto each frame.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from loom import storage
from loom.errors import InputError
from loom.template import VisualSegment
from loom.visual.fonts import font_chain, uncovered
from loom.visual.look import TextLook, sample_text_look
from loom.visual.removal import FIT_RING, Box, geometry, mask_in_crop, remove_content
from loom.visual.text import InkLine, fit_line

_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


@dataclass
class Content:
    """What goes in the box at its base size: premultiplied RGB and alpha, both float32 in [0, 1]."""

    rgb: np.ndarray  # (h, w, 3) premultiplied by alpha
    alpha: np.ndarray  # (h, w)
    info: dict[str, object]


def parse_color(value: str, field: str) -> tuple[int, int, int]:
    m = _HEX.match(value.strip())
    if not m:
        raise InputError(field, f"{value!r} is not a colour", "write colours as #RRGGBB")
    h = m.group(1)
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def base_canvas(base: Box) -> tuple[int, int]:
    return max(1, int(math.ceil(base[2]))), max(1, int(math.ceil(base[3])))


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
    digest = hashlib.sha256(data).hexdigest()[:16]
    tmp = Path(tempfile.gettempdir()) / f"loom-font-{digest}{Path(font).suffix or '.ttf'}"
    if not tmp.exists():  # a local copy: FreeType needs a real file, and it is reused
        tmp.write_bytes(data)
    return str(tmp)


def _place_x(line: InkLine, width: float, pad: float, align: str) -> float:
    if align == "left":
        return pad
    if align == "right":
        return width - pad - line.width
    return (width - line.width) / 2


def measure_text_look(segment: VisualSegment, first_frame: np.ndarray, base: Box) -> TextLook:
    """How the original text in the base box looks (colour, weight, size, baseline, alignment),
    measured against the box with the text removed. Recipient-independent: prepare stores it."""
    chain = font_chain(_font_path(segment))
    g = geometry(base, base, first_frame.shape[1], first_frame.shape[0])
    cx0, cy0, cx1, cy1 = g.crop
    crop = first_frame[cy0:cy1, cx0:cx1]
    cleaned = remove_content(crop, mask_in_crop(g), FIT_RING).image
    bx0, by0 = int(round(base[0])) - cx0, int(round(base[1])) - cy0
    bw, bh = base_canvas(base)
    return sample_text_look(crop[by0 : by0 + bh, bx0 : bx0 + bw], cleaned[by0 : by0 + bh, bx0 : bx0 + bw], chain)


def look_to_dict(look: TextLook) -> dict[str, object]:
    return dataclasses.asdict(look)


def look_from_dict(data: dict[str, object]) -> TextLook:
    """The inverse of ``look_to_dict`` after a JSON round trip (lists back to tuples)."""
    ink = data.get("ink_box")
    return TextLook(
        color=tuple(int(v) for v in data["color"]),  # type: ignore[arg-type, union-attr]
        bold=bool(data["bold"]),
        cap_height=float(data["cap_height"]),  # type: ignore[arg-type]
        baseline=float(data["baseline"]),  # type: ignore[arg-type]
        align=str(data["align"]),
        found=bool(data["found"]),
        ink_box=tuple(int(v) for v in ink) if ink is not None else None,  # type: ignore[arg-type, union-attr]
    )


def text_content(value: str, segment: VisualSegment, look: TextLook, base: Box) -> Content:
    """The new text at the base box size, looking like the text it replaces (``look``)."""
    chain = font_chain(_font_path(segment))
    style = segment.style
    bw, bh = base_canvas(base)
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
