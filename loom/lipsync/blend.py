"""Put a generated mouth back into the frame without a visible box or colour step.

The original pastes the whole 96x96 output over the face box, which shows as a blurry
rectangle. Here only the lower face is taken, through a feathered elliptical mask that is zero
on the upper face and at every edge of the box; the generated pixels are first colour-matched to
the original skin around the mouth and, optionally, sharpened after upscaling.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from loom.lipsync.faces import FaceBox
from loom.media.patches import Patch

# Geometry of the lower face inside a padded face box, as fractions of its width/height. The
# ellipse lies wholly in the lower half and inside the box, so alpha is exactly 0 on the upper
# face (which the model only copies) and on every edge of the box.
UPPER_FACE_END = 0.5
MOUTH_CENTRE = (0.5, 0.73)
MOUTH_AXES = (0.36, 0.22)
SOLID = 0.35  # fraction of the ellipse radius kept fully generated; the rest fades out smoothly


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@lru_cache(maxsize=64)
def lower_face_mask(height: int, width: int) -> np.ndarray:
    """``(h, w)`` float32 alpha in [0, 1]: 1 around mouth and chin, fading to 0 well inside the box."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u = (xx + 0.5) / width
    v = (yy + 0.5) / height
    cx, cy = MOUTH_CENTRE
    ax, ay = MOUTH_AXES
    radius = np.sqrt(((u - cx) / ax) ** 2 + ((v - cy) / ay) ** 2)
    mask = 1.0 - _smoothstep((radius - SOLID) / (1.0 - SOLID))
    mask *= v > UPPER_FACE_END  # belt and braces: never a pixel of the upper face
    mask[mask < 1.0 / 510] = 0.0  # what would round to alpha 0 is exactly 0
    return mask.astype(np.float32)


def match_colour(generated: np.ndarray, original: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Shift the generated pixels' Lab mean to the original's over the mask's feathered ring.

    The ring (where alpha fades) is cheek and chin skin, and it is where a colour step would
    show; the mouth itself is left out so a newly opened mouth is not brightened towards skin.
    """
    ring = (4.0 * mask * (1.0 - mask))[..., None].astype(np.float32)
    total = float(ring.sum())
    if total < 1.0:
        return generated
    gen_lab = cv2.cvtColor(generated, cv2.COLOR_RGB2LAB).astype(np.float32)
    org_lab = cv2.cvtColor(original, cv2.COLOR_RGB2LAB).astype(np.float32)
    shift = ((org_lab - gen_lab) * ring).sum((0, 1)) / total
    return cv2.cvtColor(np.clip(gen_lab + shift + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def sharpen(image: np.ndarray, amount: float, upscale: float) -> np.ndarray:
    """Unsharp mask scaled to how much the 96x96 output was enlarged."""
    if amount <= 0 or upscale <= 1.0:
        return image
    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=0.5 * upscale)
    return cv2.addWeighted(image, 1.0 + amount, blurred, -amount, 0)


def blend_mouth(
    frame: np.ndarray,
    box: FaceBox,
    generated: np.ndarray,
    colour_match: bool = True,
    sharpen_amount: float = 0.4,
) -> Patch | None:
    """An RGBA patch that lays the generated lower face (RGB, any size) over ``frame``'s ``box``.

    The patch is trimmed to the rows and columns its mask touches; pixels outside it, and every
    pixel of the upper face, keep the frame's values exactly.
    """
    h, w = box.height, box.width
    if h < 8 or w < 8:
        return None
    original = frame[box.y1 : box.y2, box.x1 : box.x2]
    upscale = max(h, w) / generated.shape[0]
    resized = cv2.resize(generated, (w, h), interpolation=cv2.INTER_CUBIC if upscale > 1 else cv2.INTER_AREA)
    resized = sharpen(resized, sharpen_amount, upscale)
    mask = lower_face_mask(h, w)
    if colour_match:
        resized = match_colour(resized, original, mask)
    alpha = np.clip(mask * 255.0 + 0.5, 0, 255).astype(np.uint8)
    rows = np.flatnonzero(alpha.any(axis=1))
    cols = np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return None
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    rgba = np.dstack([resized[r0:r1, c0:c1], alpha[r0:r1, c0:c1]])
    return Patch(x=box.x1 + int(c0), y=box.y1 + int(r0), rgba=np.ascontiguousarray(rgba))
