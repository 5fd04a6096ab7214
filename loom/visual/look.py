"""What the original text in a box looks like: its colour, weight, size, baseline and alignment.

The original is compared with the same box after removal (``removal.remove_content``): pixels
that differ a lot are ink. Replacement text copies what it can measure, so the new name sits on
the old baseline with the old colour and weight, and never grows past the old size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from loom.visual.fonts import FontFace
from loom.visual.text import cap_height_ratio, render_line


@dataclass
class TextLook:
    color: tuple[int, int, int]
    bold: bool
    cap_height: float  # px above the baseline
    baseline: float  # row in box coordinates
    align: str  # left, center or right
    found: bool  # False when the box held no visible text (defaults were used)
    ink_box: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 in box coordinates


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary ink mask: 2 x area / perimeter (a stroke of width w and
    length L has area wL and perimeter about 2L)."""
    m = mask.astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    return 2.0 * float(m.sum()) / perimeter if perimeter > 0 else 0.0


@lru_cache(maxsize=64)
def _reference_stroke_ratio(chain: tuple[FontFace, ...], cap_px: int, bold: bool) -> float:
    size = max(6, int(round(cap_px / cap_height_ratio(chain, bold))))
    line = render_line("Acme Corporation", size, chain, bold)
    cap = max(1.0, line.baseline)
    return stroke_width(line.alpha > 0.5) / cap


def _contrasting(background: np.ndarray) -> tuple[int, int, int]:
    luma = float(np.mean(background.reshape(-1, 3) @ np.array([0.299, 0.587, 0.114])))
    return (20, 20, 20) if luma > 128 else (245, 245, 245)


def _ink_color(original: np.ndarray, background: np.ndarray, core: np.ndarray) -> tuple[int, int, int]:
    """The ink's colour. Luma comes from the stems' centres; chroma is recovered by unmixing,
    because 4:2:0 video averages the chroma of thin strokes with the background around them."""
    ycc = cv2.cvtColor(original, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    bg = cv2.cvtColor(background, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    y_ink = float(np.median(ycc[..., 0][core]))
    contrast = y_ink - bg[..., 0]
    fallback = tuple(int(v) for v in np.median(original[core].reshape(-1, 3), axis=0))
    if float(np.median(np.abs(contrast[core]))) < 12.0:
        return fallback  # ink differs from the background in hue only: no luma to unmix with
    cover = np.clip((ycc[..., 0] - bg[..., 0]) / np.where(np.abs(contrast) < 1e-3, 1e-3, contrast), 0.0, 1.0)
    cover = cv2.GaussianBlur(cover, (0, 0), 1.0)  # the chroma a decoder shows is spread like this
    near = cover > 0.15
    if near.sum() < 4:
        return fallback
    chroma = []
    for c in (1, 2):
        delta = (ycc[..., c] - bg[..., c])[near]
        a = cover[near]
        chroma.append(float(np.median(bg[..., c][near])) + float((a * delta).sum() / (a * a).sum()))
    pixel = np.array([[[y_ink, chroma[0], chroma[1]]]], np.float32).clip(0, 255).astype(np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(pixel, cv2.COLOR_YCrCb2RGB)[0, 0])  # type: ignore[return-value]


def sample_text_look(original: np.ndarray, background: np.ndarray, chain: tuple[FontFace, ...]) -> TextLook:
    """Measure the text in ``original`` (RGB box crop) against ``background`` (the same crop with
    the text removed)."""
    h, w = original.shape[:2]
    diff = np.linalg.norm(original.astype(np.float32) - background.astype(np.float32), axis=2)
    peak = float(np.percentile(diff, 99.5)) if diff.size else 0.0
    if peak < 30.0:
        return TextLook(_contrasting(background), False, 0.55 * h, 0.5 * h + 0.275 * h, "center", False)
    ink = diff > max(18.0, 0.4 * peak)
    core = diff >= np.percentile(diff[ink], 90)  # stem centres, not anti-aliased edges
    color = _ink_color(original, background, core)
    rows = ink.sum(axis=1)
    cols = ink.sum(axis=0)
    ys = np.nonzero(rows)[0]
    xs = np.nonzero(cols)[0]
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    # The baseline is the bottom of the dense band of rows (descenders are sparse below it).
    dense = np.nonzero(rows >= 0.3 * rows.max())[0]
    baseline = float(dense.max() + 1) if len(dense) else float(y1)
    cap = max(2.0, baseline - y0)
    half = diff > 0.5 * float(np.median(diff[core]))
    ratio = stroke_width(half) / cap
    cap_px = max(6, int(round(cap)))
    regular = _reference_stroke_ratio(chain, cap_px, False)
    heavy = _reference_stroke_ratio(chain, cap_px, True)
    bold = abs(ratio - heavy) < abs(ratio - regular)
    left, right = x0, w - x1
    if abs(left - right) <= 0.12 * w:
        align = "center"
    else:
        align = "left" if left < right else "right"
    return TextLook(color, bold, cap, baseline, align, True, (x0, y0, x1, y1))  # type: ignore[arg-type]
