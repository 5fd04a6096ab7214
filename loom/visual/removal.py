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


def remove_content(crop: np.ndarray, mask: np.ndarray, ring_width: int = 4, seed: int = 0) -> Removal:
    """Replace ``crop``'s pixels under ``mask`` (bool, same h x w) with what surrounds them."""
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
    coef, *_ = np.linalg.lstsq(terms, values, rcond=None)
    residual = float(np.sqrt(np.mean((terms @ coef - values) ** 2)))
    out = crop.copy()
    if residual <= FLAT_RESIDUAL:
        my, mx = np.nonzero(mask)
        fill = _surface_terms(mx.astype(np.float64), my.astype(np.float64), w, h) @ coef
        if residual > 1.0:
            # sensor/compression grain of the surroundings, so the fill is not suspiciously clean
            rng = np.random.default_rng(seed)
            fill = fill + rng.normal(0.0, residual * 0.8, size=fill.shape)
        out[my, mx] = np.clip(fill + 0.5, 0, 255).astype(np.uint8)
        return Removal(out, "flat", residual)
    radius = max(3, int(min(h, w) * 0.08))
    out = cv2.inpaint(np.ascontiguousarray(crop), mask.astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)
    return Removal(out, "inpaint", residual)
