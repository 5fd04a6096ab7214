"""Lay out one line of text with per-character font fallback and fit it into a box.

A line is drawn run by run (``fonts.split_runs``), each run with its own face, on a shared
baseline. Right-to-left lines put their runs in right-to-left order; inside a run the shaper
(libraqm, when Pillow has it) orders and joins the characters. The result is an alpha mask of the
ink, cropped to the ink, with the baseline's row, so callers can place it like the original text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np
from bidi import get_base_level, get_display
from PIL import Image, ImageDraw, features

from loom.visual.fonts import FontFace, TextRun, is_variable, load_font, split_runs

_HAVE_RAQM = features.check("raqm")
MIN_FONT_PX = 6


@dataclass
class InkLine:
    """A rendered line: coverage in [0, 1] cropped to the ink, and where its baseline falls."""

    alpha: np.ndarray  # float32 (h, w)
    baseline: float  # row of the baseline in ``alpha`` (may lie outside it)
    size: int  # font size in pixels
    runs: list[TextRun] = field(default_factory=list)
    run_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # ink box per run, in alpha coords
    scale: float = 1.0  # < 1 when shrunk below the smallest font size

    @property
    def width(self) -> int:
        return int(self.alpha.shape[1])

    @property
    def height(self) -> int:
        return int(self.alpha.shape[0])


def visual_runs(text: str, chain: tuple[FontFace, ...]) -> list[TextRun]:
    """Runs in drawing order (left to right on screen); a right-to-left line reverses them."""
    runs = [r for r in split_runs(text, chain) if r.face is not None]
    if text and get_base_level(text) == 1:
        runs.reverse()
    return runs


def render_line(text: str, size: int, chain: tuple[FontFace, ...], bold: bool = False) -> InkLine:
    """Draw ``text`` at ``size`` px: each run with its face, all on one baseline, anti-aliased."""
    size = max(1, int(size))
    runs = visual_runs(text, chain)
    drawn = []
    for run in runs:
        font = load_font(run.face, size, bold)
        stroke = max(1, round(size / 28)) if bold and not is_variable(run.face) else 0
        shown = run.text if _HAVE_RAQM else get_display(run.text)
        drawn.append((run, font, stroke, shown, font.getlength(shown)))
    pad = size
    width = int(sum(d[4] for d in drawn)) + 2 * pad + 4
    height = int(size * 2.6) + 2 * pad
    baseline = pad + int(size * 1.6)
    canvas = Image.new("L", (max(width, 1), height), 0)
    draw = ImageDraw.Draw(canvas)
    x = float(pad)
    boxes = []
    for run, font, stroke, shown, advance in drawn:
        draw.text((x, baseline), shown, font=font, fill=255, anchor="ls", stroke_width=stroke, stroke_fill=255)
        left, top, right, bottom = draw.textbbox((x, baseline), shown, font=font, anchor="ls", stroke_width=stroke)
        boxes.append((int(left), int(top), int(right), int(bottom)))
        x += advance
    alpha = np.asarray(canvas, dtype=np.float32) / 255.0
    ys, xs = np.nonzero(alpha > 0)
    if len(xs) == 0:
        return InkLine(np.zeros((0, 0), np.float32), 0.0, size, [d[0] for d in drawn], [])
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    run_boxes = [(bx0 - x0, by0 - y0, bx1 - x0, by1 - y0) for bx0, by0, bx1, by1 in boxes]
    return InkLine(alpha[y0:y1, x0:x1].copy(), float(baseline - y0), size, [d[0] for d in drawn], run_boxes)


@lru_cache(maxsize=8)
def cap_height_ratio(chain: tuple[FontFace, ...], bold: bool = False) -> float:
    """Height of a capital 'H' per pixel of font size in the first face (about 0.71 for Noto Sans)."""
    line = render_line("H", 200, chain[:1] + chain, bold)
    return max(line.height, 1) / 200.0


def fit_line(
    text: str,
    max_width: float,
    max_height: float,
    max_cap_height: float,
    chain: tuple[FontFace, ...],
    bold: bool = False,
) -> InkLine:
    """The largest rendering of ``text`` whose ink fits ``max_width`` x ``max_height`` and whose
    capitals are no taller than ``max_cap_height`` (the original text's size: never grow past it)."""
    size = max(MIN_FONT_PX, int(max_cap_height / cap_height_ratio(chain, bold)))
    line = render_line(text, size, chain, bold)
    for _ in range(40):
        if line.width <= max_width and line.height <= max_height:
            return line
        if size <= MIN_FONT_PX:
            break
        ratio = min(max_width / max(line.width, 1), max_height / max(line.height, 1))
        size = max(MIN_FONT_PX, min(size - 1, int(size * ratio)))
        line = render_line(text, size, chain, bold)
    if line.width <= max_width and line.height <= max_height:
        return line
    # Even the smallest font is too big: scale the ink itself down so nothing overflows.
    scale = min(max_width / max(line.width, 1), max_height / max(line.height, 1))
    w = max(1, int(line.width * scale))
    h = max(1, int(line.height * scale))
    alpha = cv2.resize(line.alpha, (w, h), interpolation=cv2.INTER_AREA)
    boxes = [tuple(int(v * scale) for v in b) for b in line.run_boxes]
    return InkLine(alpha, line.baseline * scale, line.size, line.runs, boxes, scale)  # type: ignore[arg-type]
