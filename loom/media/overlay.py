"""Composite RGBA patches onto decoded frames, converting only the pixels under the patches.

A decoded 4:2:0 frame stays in YUV: each patch's RGB is converted with the frame's own matrix and
range and alpha-blended into the planes (the same as blending in RGB, the conversion being linear);
luma changes only where a patch has alpha, chroma only in the 2x2 blocks such pixels touch. So
pixels outside the boxes are exactly the decoded original's, and the cost follows the box area,
not the frame size.
"""

from __future__ import annotations

import cv2
import numpy as np

from loom.media.patches import Patch

# (Kr, Kb) of the matrices; FFmpeg's AVColorSpace values: 1 = BT.709, 9/10 = BT.2020, others BT.601
_MATRIX = {1: (0.2126, 0.0722), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}
_BT601 = (0.299, 0.114)


def _coefficients(colorspace: int | None) -> tuple[float, float, float]:
    kr, kb = _MATRIX.get(int(colorspace or 0), _BT601)
    return kr, 1.0 - kr - kb, kb


def patch_yuv420p(y_plane: np.ndarray, u_plane: np.ndarray, v_plane: np.ndarray, patches: list[Patch],
                  colorspace: int | None = None, full_range: bool = False) -> None:
    """Composite ``patches`` into 4:2:0 planes, in place (luma (h, w), chroma (h/2, w/2)).

    The blend runs in YUV: the matrix is linear, so blending the patch's YUV over the frame's
    equals blending in RGB and converting, without converting the frame's pixels to RGB and back.
    A chroma sample covers a 2x2 block of luma pixels: it becomes the block's mean of the blended
    chroma, i.e. the old sample weighted by one minus the block's mean alpha plus the block's mean
    of the patch's alpha-weighted chroma. Where alpha is 0 the planes keep their exact values.
    Every step runs on whole 2-D planes (numpy is slow over a short innermost RGBA axis).
    """

    h, w = y_plane.shape
    kr, kg, kb = _coefficients(colorspace)
    ys, cs, offset = (1.0, 1.0, 0.0) if full_range else (219 / 255, 224 / 255, 16.0)
    ku, kv = cs / (2 * (1 - kb)), cs / (2 * (1 - kr))
    for p in patches:
        ph, pw = p.rgba.shape[:2]
        x0, y0, x1, y1 = max(0, p.x), max(0, p.y), min(w, p.x + pw), min(h, p.y + ph)
        if x1 <= x0 or y1 <= y0:
            continue
        # the box grown to whole 2x2 blocks; the added pixels are transparent
        ex0, ey0, ex1, ey1 = x0 & ~1, y0 & ~1, min(w, (x1 + 1) & ~1), min(h, (y1 + 1) & ~1)
        src = p.rgba[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x]
        if (ex0, ey0, ex1, ey1) != (x0, y0, x1, y1):
            grown = np.zeros((ey1 - ey0, ex1 - ex0, 4), np.uint8)
            grown[y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0] = src
            src = grown
        r, g, b, a = cv2.split(np.ascontiguousarray(src))
        if not a.any():
            continue
        alpha = a * np.float32(1 / 255)
        y = r * np.float32(kr) + g * np.float32(kg) + b * np.float32(kb)  # full-range luma, 0..255
        luma = y_plane[ey0:ey1, ex0:ex1]
        new_y = y * np.float32(ys) + np.float32(offset)
        luma[...] = np.minimum(luma + (new_y - luma) * alpha + np.float32(0.5), np.float32(255)).astype(np.uint8)
        half = ((ex1 - ex0) // 2, (ey1 - ey0) // 2)
        keep = 1.0 - cv2.resize(alpha, half, interpolation=cv2.INTER_AREA)  # exact 2x2 means
        for plane, diff, k in ((u_plane, b, ku), (v_plane, r, kv)):
            weighted = ((diff - y) * np.float32(k) + np.float32(128.0)) * alpha
            mean = cv2.resize(weighted, half, interpolation=cv2.INTER_AREA)
            chroma = plane[ey0 // 2 : ey1 // 2, ex0 // 2 : ex1 // 2]
            # full range reaches 255.5 for saturated red/blue: clipped, or the cast wraps it to 0
            chroma[...] = np.minimum(chroma * keep + mean + np.float32(0.5), np.float32(255)).astype(np.uint8)


def plane_views(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: ANN001
    """Writable numpy views of a yuv420p ``av.VideoFrame``'s planes (no copy)."""
    frame.make_writable()
    sizes = ((frame.height, frame.width), (frame.height // 2, frame.width // 2), (frame.height // 2, frame.width // 2))
    views = []
    for plane, (h, w) in zip(frame.planes, sizes):
        data = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        views.append(data[:h, :w])
    return views[0], views[1], views[2]
