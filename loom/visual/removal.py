"""Take the original content out of a box: fill it from the pixels around it.

Most placeholders sit on flat or gradient backgrounds (a slide, a browser tab, a name plate):
a smooth surface fitted to the ring of pixels around the box and carried into it is exact there,
with the ring's grain added back so the fill does not look smoother than the video. Textured
surroundings (camera footage, photos) go to OpenCV's inpainting instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

FLAT_RESIDUAL = 6.0  # RMS (0-255) of the ring around a smooth-surface fit; above it, inpaint
FIT_POINTS = 1500  # ring pixels a surface is fitted to, at most (the fit costs in proportion)
INLIER_SHARE = 0.6  # share of the ring that must lie on the fitted surface
INPAINT_MAX_PIXELS = 12_000  # larger crops are inpainted at a reduced size

# Removal reaches this share of the box's smaller side beyond it: text boxes are usually drawn
# with room around the text; a logo's box is often drawn tight around the mark.
TEXT_PAD = 0.04
IMAGE_PAD = 0.1
# The background surface is fitted to the 2 px just outside the removal mask: the pixels that
# must join up with the fill, and the least likely to reach a plate's border or a neighbour.
FIT_RING = 2

Box = tuple[float, float, float, float]


@dataclass
class Removal:
    image: np.ndarray  # RGB uint8, the crop with the masked pixels replaced
    method: str  # "flat" or "inpaint"
    residual: float


def _surface_terms(xs: np.ndarray, ys: np.ndarray, w: int, h: int) -> np.ndarray:
    u = xs / max(w - 1, 1) - 0.5
    v = ys / max(h - 1, 1) - 0.5
    return np.stack([np.ones_like(u), u, v, u * v, u * u, v * v], axis=1)


def ring_mask(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of the mask but outside it."""
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * width + 1, 2 * width + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool) & ~mask.astype(bool)


def fit_surface(crop: np.ndarray, mask: np.ndarray, ring_width: int = 3, seed: int = 0) -> Removal | None:
    """Fill ``mask`` with a smooth surface fitted to the ring around it, or None when the ring is
    textured (the surface would not match it)."""
    mask = mask.astype(bool)
    h, w = mask.shape
    ring = ring_mask(mask, max(2, ring_width))
    if ring.sum() < 12:
        ring = ~mask
    if ring.sum() < 12 or not mask.any():
        return Removal(crop.copy(), "none", 0.0)
    ys, xs = np.nonzero(ring)
    if len(ys) > FIT_POINTS:  # six coefficients need far fewer: an even spread of the ring is as good
        pick = np.linspace(0, len(ys) - 1, FIT_POINTS).astype(np.intp)
        ys, xs = ys[pick], xs[pick]
    terms = _surface_terms(xs.astype(np.float64), ys.astype(np.float64), w, h)
    values = crop[ys, xs].astype(np.float64)
    # Robust fit: ring pixels on a neighbouring line or letter are outliers, not background.
    keep = np.ones(len(values), bool)
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(terms[keep], values[keep], rcond=None)
        err = np.abs(terms @ coef - values).max(axis=1)
        limit = max(6.0, 3.0 * float(np.median(err[keep])) * 1.4826)
        keep = err <= limit
        if keep.sum() < 12:
            keep = np.ones(len(values), bool)
            break
    coef, *_ = np.linalg.lstsq(terms[keep], values[keep], rcond=None)
    residual = float(np.sqrt(np.mean((terms[keep] @ coef - values[keep]) ** 2)))
    if residual > FLAT_RESIDUAL or keep.mean() < INLIER_SHARE:
        return None
    out = crop.copy()
    my, mx = np.nonzero(mask)
    fill = _surface_terms(mx.astype(np.float64), my.astype(np.float64), w, h) @ coef
    if residual > 1.0:
        # sensor/compression grain of the surroundings, so the fill is not suspiciously clean
        rng = np.random.default_rng(seed)
        fill = fill + rng.normal(0.0, residual * 0.8, size=fill.shape)
    out[my, mx] = np.clip(fill + 0.5, 0, 255).astype(np.uint8)
    return Removal(out, "flat", residual)


def inpaint(crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Texture-aware fill (frequency-selective reconstruction from opencv-contrib's xphoto).

    It costs about a second per 10k pixels, so large regions are filled at a reduced size and the
    fill scaled back; callers run it once per segment, not per frame.
    """
    mask = mask.astype(bool)
    h, w = mask.shape
    factor = min(1.0, (INPAINT_MAX_PIXELS / max(1, h * w)) ** 0.5)
    small = crop if factor >= 1.0 else cv2.resize(crop, (max(8, int(w * factor)), max(8, int(h * factor))), interpolation=cv2.INTER_AREA)
    small_mask = mask if factor >= 1.0 else cv2.resize(mask.astype(np.uint8), (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
    small_mask = cv2.dilate(small_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) if factor < 1.0 else small_mask
    bgr = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2BGR)
    filled = np.zeros_like(bgr)
    valid = (~small_mask).astype(np.uint8) * 255
    try:
        cv2.xphoto.inpaint(bgr, valid, filled, cv2.xphoto.INPAINT_FSR_FAST)
    except (AttributeError, cv2.error):
        filled = cv2.inpaint(bgr, small_mask.astype(np.uint8) * 255, 5, cv2.INPAINT_TELEA)
    filled = cv2.cvtColor(filled, cv2.COLOR_BGR2RGB)
    if factor < 1.0:
        filled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_CUBIC)
    out = crop.copy()
    out[mask] = filled[mask]
    return out


def remove_content(crop: np.ndarray, mask: np.ndarray, ring_width: int = 3, seed: int = 0) -> Removal:
    """Replace ``crop``'s pixels under ``mask`` (bool, same h x w) with what surrounds them."""
    flat = fit_surface(crop, mask, ring_width, seed)
    if flat is not None:
        return flat
    return Removal(inpaint(crop, mask), "inpaint", FLAT_RESIDUAL)


@dataclass
class Geometry:
    """Where one frame's patch goes: the removal mask and the crop around it, in frame pixels."""

    crop: tuple[int, int, int, int]  # x0, y0, x1, y1
    mask: tuple[int, int, int, int]
    ring: int


def geometry(
    box: Box, base: Box, frame_w: int, frame_h: int, pad_ratio: float = 0.04, motion: tuple[float, float] = (0.0, 0.0)
) -> Geometry:
    """The removal mask (the box plus a pad for anti-aliased edges, and ``motion`` px more along
    each axis for motion blur, which smears the old content along the motion) and the crop
    holding the ring around it."""
    x, y, w, h = box
    scale = math.sqrt(max(w, 1e-3) * max(h, 1e-3) / (max(base[2], 1e-3) * max(base[3], 1e-3)))
    pad = max(1.5, pad_ratio * min(base[2], base[3]) * scale)
    pad_x = pad + abs(motion[0])
    pad_y = pad + abs(motion[1])
    ring = max(3, int(round(0.2 * min(base[2], base[3]) * scale)))
    mx0 = max(0, int(math.floor(x - pad_x)))
    my0 = max(0, int(math.floor(y - pad_y)))
    mx1 = min(frame_w, int(math.ceil(x + w + pad_x)))
    my1 = min(frame_h, int(math.ceil(y + h + pad_y)))
    crop = (max(0, mx0 - ring), max(0, my0 - ring), min(frame_w, mx1 + ring), min(frame_h, my1 + ring))
    return Geometry(crop, (mx0, my0, mx1, my1), ring)


def mask_in_crop(g: Geometry) -> np.ndarray:
    cx0, cy0, cx1, cy1 = g.crop
    mx0, my0, mx1, my1 = g.mask
    mask = np.zeros((cy1 - cy0, cx1 - cx0), bool)
    mask[my0 - cy0 : my1 - cy0, mx0 - cx0 : mx1 - cx0] = True
    return mask


class BoxCleaner:
    """Removes the original content from the box on each frame.

    Flat or gradient surroundings are refitted on every frame (cheap, and it follows lighting).
    Textured ones are inpainted once, on the first frame, into a clean plate that then moves and
    scales with the box (the surface under a planted mark moves with it), with each frame's
    brightness offset measured on the ring around the box: steady, and a fraction of the cost.
    """

    def __init__(
        self,
        first_frame: np.ndarray,
        base: Box,
        background: tuple[int, int, int] | None = None,
        pad_ratio: float = TEXT_PAD,
        motion: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        self.first_frame = first_frame
        self.base = base
        self.background = background
        # The plate's own mask must reach as far as any frame's (its pad and largest blur pad):
        # beyond it the plate holds the first frame's pixels, edges of the old content included.
        self.pad_ratio = pad_ratio
        self.motion = motion
        self._plate: tuple[np.ndarray, np.ndarray, tuple[int, int]] | None = None

    def _clean_plate(self) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        if self._plate is None:
            fh, fw = self.first_frame.shape[:2]
            g = geometry(self.base, self.base, fw, fh, self.pad_ratio, self.motion)
            cx0, cy0, cx1, cy1 = g.crop
            crop = self.first_frame[cy0:cy1, cx0:cx1]
            plate = inpaint(crop, mask_in_crop(g))
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
