"""Take the original content out of a box: fill it from the pixels around it.

Most placeholders sit on flat or gradient backgrounds (a slide, a browser tab, a name plate):
a smooth surface fitted to the ring of pixels around the box and carried into it is exact there,
with the ring's grain added back so the fill does not look smoother than the video. Textured
surroundings (camera footage, photos) go to OpenCV's inpainting instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FLAT_RESIDUAL = 6.0  # RMS (0-255) of the ring around a smooth-surface fit; above it, inpaint
INLIER_SHARE = 0.6  # share of the ring that must lie on the fitted surface
INPAINT_MAX_PIXELS = 12_000  # larger crops are inpainted at a reduced size


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
