"""Composite RGBA patches onto decoded frames, converting only the pixels under the patches.

A decoded 4:2:0 frame stays in YUV: each patch's RGB is converted with the frame's own matrix and
range and alpha-blended into the planes (the same as blending in RGB, the conversion being linear);
luma changes only where a patch has alpha, chroma only in the 2x2 blocks such pixels touch. So
pixels outside the boxes are exactly the decoded original's, and the cost follows the box area,
not the frame size.
"""

from __future__ import annotations

import numpy as np

from loom.media.patches import Patch

# (Kr, Kb) of the matrices; FFmpeg's AVColorSpace values: 1 = BT.709, 9/10 = BT.2020, others BT.601
_MATRIX = {1: (0.2126, 0.0722), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}
_BT601 = (0.299, 0.114)


def _coefficients(colorspace: int | None) -> tuple[float, float, float]:
    kr, kb = _MATRIX.get(int(colorspace or 0), _BT601)
    return kr, 1.0 - kr - kb, kb


def _to_yuv(rgb: np.ndarray, cs: int | None, full: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    kr, kg, kb = _coefficients(cs)
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    y = kr * r + kg * g + kb * b
    u = (b - y) / (2 * (1 - kb))
    v = (r - y) / (2 * (1 - kr))
    if not full:
        y, u, v = 16 + y * (219 / 255), u * (224 / 255), v * (224 / 255)
    return y, u + 128, v + 128


def patch_yuv420p(y_plane: np.ndarray, u_plane: np.ndarray, v_plane: np.ndarray, patches: list[Patch],
                  colorspace: int | None = None, full_range: bool = False) -> None:
    """Composite ``patches`` into 4:2:0 planes, in place (luma (h, w), chroma (h/2, w/2)).

    The blend runs in YUV: the matrix is linear, so blending the patch's YUV over the frame's
    equals blending in RGB and converting, without converting the frame's pixels to RGB and back.
    Chroma is blended at full resolution and averaged back over each 2x2 block a patch touches.
    """
    h, w = y_plane.shape
    boxes = []
    for p in patches:
        ph, pw = p.rgba.shape[:2]
        x0, y0, x1, y1 = max(0, p.x), max(0, p.y), min(w, p.x + pw), min(h, p.y + ph)
        if x1 > x0 and y1 > y0:
            boxes.append((p, x0, y0, x1, y1))
    if not boxes:
        return
    # one even-aligned crop around every box, so chroma samples map 1:2 onto it
    cx0 = min(b[1] for b in boxes) & ~1
    cy0 = min(b[2] for b in boxes) & ~1
    cx1 = min(w, (max(b[3] for b in boxes) + 1) & ~1)
    cy1 = min(h, (max(b[4] for b in boxes) + 1) & ~1)
    yc = y_plane[cy0:cy1, cx0:cx1]
    uc = u_plane[cy0 // 2 : cy1 // 2, cx0 // 2 : cx1 // 2]
    vc = v_plane[cy0 // 2 : cy1 // 2, cx0 // 2 : cx1 // 2]
    up = lambda c: np.repeat(np.repeat(c, 2, axis=0), 2, axis=1)[: yc.shape[0], : yc.shape[1]]  # noqa: E731
    yf = yc.astype(np.float32)
    uf, vf = up(uc).astype(np.float32), up(vc).astype(np.float32)
    touched = np.zeros(yc.shape, bool)
    for p, x0, y0, x1, y1 in boxes:
        src = p.rgba[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x]
        opaque = src[..., 3] > 0
        if not opaque.any():
            continue
        alpha = src[..., 3].astype(np.float32) * (1.0 / 255.0)
        keep = 1.0 - alpha
        py, pu, pv = _to_yuv(src[..., :3], colorspace, full_range)
        box = (slice(y0 - cy0, y1 - cy0), slice(x0 - cx0, x1 - cx0))
        for plane, new in ((yf, py), (uf, pu), (vf, pv)):
            plane[box] = new * alpha + plane[box] * keep
        touched[box] |= opaque
    np.copyto(yc, np.clip(yf + 0.5, 0, 255).astype(np.uint8), where=touched)
    hh, ww = yc.shape[0] // 2, yc.shape[1] // 2
    t = touched[: hh * 2, : ww * 2]
    block = t[0::2, 0::2] | t[1::2, 0::2] | t[0::2, 1::2] | t[1::2, 1::2]
    for plane, new in ((uc, uf), (vc, vf)):
        n = new[: hh * 2, : ww * 2]
        mean = (n[0::2, 0::2] + n[1::2, 0::2] + n[0::2, 1::2] + n[1::2, 1::2]) * 0.25
        np.copyto(plane[:hh, :ww], np.clip(mean + 0.5, 0, 255).astype(np.uint8), where=block)


def plane_views(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: ANN001
    """Writable numpy views of a yuv420p ``av.VideoFrame``'s planes (no copy)."""
    frame.make_writable()
    sizes = ((frame.height, frame.width), (frame.height // 2, frame.width // 2), (frame.height // 2, frame.width // 2))
    views = []
    for plane, (h, w) in zip(frame.planes, sizes):
        data = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        views.append(data[:h, :w])
    return views[0], views[1], views[2]
