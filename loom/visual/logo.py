"""Logos: read from a local path, gs:// or https://, and fitted into the box keeping their aspect."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from loom import storage
from loom.errors import InputError
from loom.fetch import FetchError, TooLarge
from loom.input_policy import InputPolicy
from loom.template import VisualSegment
from loom.visual.content import Content, base_canvas
from loom.visual.removal import Box


MAX_LOGO_BYTES = 20 * 1024 * 1024
# A logo is drawn into a box of a frame: 16 MP (a 4600x3450 photo) is far more than any box shows,
# and what a header declaring more would cost (1.9 GB and 6.6 s for 6000x6600) is refused unread.
MAX_LOGO_PIXELS = 16_000_000
MAX_LOGO_SIDE = 2048  # larger logos are reduced right after decoding: the box never needs more


def load_logo(value: str, field: str, policy: InputPolicy | None = None) -> np.ndarray:
    """The logo at ``value`` (path, gs:// or https://) as RGBA uint8; InputError if unusable.

    With ``policy``, the location is checked again right before it is read (``loom.input_policy``)."""
    fix = "give a PNG or JPEG as a local path, gs:// or https:// URI"
    if not value or not value.strip():
        raise InputError(field, "logo is empty", fix)
    location = policy.check(field, value) if policy is not None else value.strip()
    try:
        data = storage.read_bytes(location, kind="logo", max_bytes=MAX_LOGO_BYTES)
    except TooLarge:
        raise InputError(field, f"logo {value!r} is over {MAX_LOGO_BYTES // 2**20} MB", "use a smaller image") from None
    except FetchError as exc:
        raise InputError(field, f"cannot read logo {value!r}: {exc.problem}", exc.fix) from None
    except Exception as exc:  # any failure to fetch a user-given URI is bad input for that row
        raise InputError(field, f"cannot read logo {value!r} ({type(exc).__name__})", fix) from None
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:  # PIL refuses headers over 2x its own limit at open
        raise InputError(field, f"logo {value!r} has far too many pixels", "use an image under 16 megapixels") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise InputError(field, f"logo {value!r} is not an image that can be read", fix) from None
    with img:
        if img.width * img.height > MAX_LOGO_PIXELS:  # from the header: nothing decoded yet
            raise InputError(field, f"logo {value!r} is {img.width}x{img.height} pixels", "use an image under 16 megapixels")
        try:
            img.draft("RGB", (MAX_LOGO_SIDE, MAX_LOGO_SIDE))  # JPEG: decode at a reduced scale where it can
            img.load()
            if max(img.size) > MAX_LOGO_SIDE:
                img.thumbnail((MAX_LOGO_SIDE, MAX_LOGO_SIDE), Image.Resampling.LANCZOS)
            rgba = np.asarray(ImageOps.exif_transpose(img).convert("RGBA"))
        except (OSError, ValueError, Image.DecompressionBombError):
            raise InputError(field, f"logo {value!r} is not an image that can be read", fix) from None
    if rgba.shape[0] < 1 or rgba.shape[1] < 1:
        raise InputError(field, f"logo {value!r} is empty", fix)
    return rgba


def logo_content(logo: np.ndarray, segment: VisualSegment, base: Box) -> Content:
    """The logo (RGBA) fitted into the base box (keeping its aspect), its edges feathered."""
    bw, bh = base_canvas(base)
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
