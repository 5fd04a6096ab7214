"""What a sales team sends beside each video: a poster frame (``<stem>.poster.jpg``) and an
animated, email-sized GIF with a play badge (``<stem>.gif``) around the first personalized moment.

Both are made from frames the render already holds (it keeps the pixels it re-encodes for the
frames asked for in its ``capture``); a frame it copied untouched is the working video's own and
is decoded from there (the prepared template's file, already on this machine).
"""

from __future__ import annotations

import io
import time
import zipfile

import cv2
import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel

from loom import storage
from loom.prepared import PreparedTemplate

GIF_WIDTH = 480  # what email clients show without scaling (most cap images at 600 px)
GIF_FPS = 5
GIF_SECONDS = 3.0
GIF_MAX_BYTES = 2 * 1024 * 1024
GIF_COLOURS = 128
POSTER_MAX_WIDTH = 1280


class ShareAssets(BaseModel):
    poster_uri: str
    gif_uri: str
    gif_frames: int
    gif_bytes: int
    gif_width: int
    gif_height: int
    seconds: float


def output_stem(out_uri: str) -> str:
    return out_uri[: -len(".mp4")] if out_uri.endswith(".mp4") else out_uri


def poster_uri(out_uri: str) -> str:
    return f"{output_stem(out_uri)}.poster.jpg"


def gif_uri(out_uri: str) -> str:
    return f"{output_stem(out_uri)}.gif"


def email_uri(out_uri: str) -> str:
    return f"{output_stem(out_uri)}.email.html"


def _segment_spans(prepared: PreparedTemplate) -> list[tuple[float, float]]:
    template = prepared.template
    return sorted((s.start_time, s.end_time) for s in [*template.voice_segments, *template.visual_segments])


def poster_frame(prepared: PreparedTemplate) -> int:
    """The middle of the first personalized segment: the name is on screen or being spoken there."""
    spans = _segment_spans(prepared)
    if not spans:
        return prepared.video.frame_count // 2
    first, stop = prepared.segment_frames(*spans[0])
    return (first + stop - 1) // 2


def gif_frames(prepared: PreparedTemplate) -> list[int]:
    """``GIF_SECONDS`` at ``GIF_FPS`` from the first personalized moment (kept inside the video): the
    first frame is personalized too, and it is all some mail clients (Outlook on Windows) show;
    the render has re-encoded these frames, so they come from its capture, not a decode."""
    fps = float(prepared.video.frame_rate)
    count = prepared.video.frame_count
    spans = _segment_spans(prepared)
    moment = spans[0][0] if spans else 0.0
    duration = count / fps
    start = max(0.0, min(moment, duration - GIF_SECONDS))
    indices = [min(count - 1, int(round((start + i / GIF_FPS) * fps))) for i in range(int(GIF_SECONDS * GIF_FPS))]
    return sorted(set(indices))


def wanted_frames(prepared: PreparedTemplate) -> list[int]:
    """Frames a render should ``capture`` for these assets."""
    return sorted({poster_frame(prepared), *gif_frames(prepared)})


def _fill_missing(prepared: PreparedTemplate, frames: dict[int, object]) -> dict[int, np.ndarray]:
    """The captured frames, and the copied ones (None: not re-encoded) as the working video has them."""
    have = {i: f for i, f in frames.items() if isinstance(f, np.ndarray)}
    missing = [i for i in frames if i not in have]
    if missing:
        have.update(_original_frames(prepared, missing))
    return have


def _original_frames(prepared: PreparedTemplate, indices: list[int]) -> dict[int, np.ndarray]:
    """The working video's frames at ``indices``, decoded once per template version and kept in its
    prepared folder (every recipient's GIF and poster fall on the same frames): the GIF's at its
    width, the poster's as large as a poster is."""
    from loom.media.patches import read_npz, write_npz
    from loom.visual.preview import _frames_at  # the preview's batched decoder (one pass per run of frames)

    cache = storage.join(prepared.root, "share-before.npz")
    poster = poster_frame(prepared)
    wanted = sorted(set(indices))
    if storage.exists(cache):
        try:
            data = read_npz(cache)
            if all(str(i) in data for i in wanted):
                return {i: np.asarray(data[str(i)]) for i in wanted}
        except (OSError, ValueError, zipfile.BadZipFile):
            pass  # unreadable (e.g. a damaged file): made again below
    every = sorted(set(wanted) | set(wanted_frames(prepared)))
    decoded = _frames_at(prepared.working_video_uri, every, keep=True)
    stored = {
        str(i): np.asarray(_resized(f, min(POSTER_MAX_WIDTH if i == poster else GIF_WIDTH, f.shape[1])))
        for i, f in decoded.items()
    }
    write_npz(cache, stored)
    return {i: stored[str(i)] for i in wanted if str(i) in stored}


def _resized(frame: np.ndarray, width: int) -> Image.Image:
    if frame.shape[1] == width:
        return Image.fromarray(frame)
    height = max(2, int(round(frame.shape[0] * width / frame.shape[1])))
    # OpenCV's area filter: a tenth of Pillow's Lanczos time for a 720p frame, as sharp at a third of the size
    interpolation = cv2.INTER_AREA if width < frame.shape[1] else cv2.INTER_CUBIC
    return Image.fromarray(cv2.resize(frame, (width, height), interpolation=interpolation))


def play_badge(size: tuple[int, int]) -> Image.Image:
    """A round play button in the middle of a transparent layer the size of the frame."""
    w, h = size
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    r = max(12, min(w, h) // 7)
    cx, cy = w // 2, h // 2
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(0, 0, 0, 150), outline=(255, 255, 255, 230), width=max(2, r // 10))
    t = r * 0.45
    draw.polygon([(cx - t * 0.8, cy - t), (cx - t * 0.8, cy + t), (cx + t * 1.1, cy)], fill=(255, 255, 255, 240))
    return layer


def gif_bytes(frames: list[np.ndarray], width: int = GIF_WIDTH) -> tuple[bytes, int, int]:
    """An animated GIF (looping, with the play badge) of ``frames`` at ``width``; narrower until it
    fits ``GIF_MAX_BYTES``. One palette for all frames: no flicker between frames, and smaller."""
    width = min(width, frames[0].shape[1])
    while True:
        images = [_resized(f, width) for f in frames]
        badge = play_badge(images[0].size)
        badged = [Image.alpha_composite(im.convert("RGBA"), badge).convert("RGB") for im in images]
        palette = badged[len(badged) // 2].quantize(colors=GIF_COLOURS, method=Image.Quantize.MEDIANCUT)
        indexed = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in badged]
        buf = io.BytesIO()
        indexed[0].save(buf, format="GIF", save_all=True, append_images=indexed[1:], duration=int(1000 / GIF_FPS), loop=0)
        data = buf.getvalue()
        if len(data) <= GIF_MAX_BYTES or width <= 160:
            return data, images[0].width, images[0].height
        width = int(width * 0.8)


def poster_jpeg(frame: np.ndarray) -> bytes:
    image = _resized(frame, min(POSTER_MAX_WIDTH, frame.shape[1]))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85, optimize=True)
    return buf.getvalue()


def make_share_assets(prepared: PreparedTemplate, out_uri: str, captured: dict[int, object]) -> ShareAssets:
    """Write the poster and the GIF beside the video; ``captured`` holds the render's frames (or None)."""
    started = time.perf_counter()
    frames = _fill_missing(prepared, {i: captured.get(i) for i in wanted_frames(prepared)})
    poster = poster_uri(out_uri)
    storage.write_bytes(poster, poster_jpeg(frames[poster_frame(prepared)]))
    data, width, height = gif_bytes([frames[i] for i in gif_frames(prepared)])
    gif = gif_uri(out_uri)
    storage.write_bytes(gif, data)
    return ShareAssets(
        poster_uri=poster,
        gif_uri=gif,
        gif_frames=len(gif_frames(prepared)),
        gif_bytes=len(data),
        gif_width=width,
        gif_height=height,
        seconds=round(time.perf_counter() - started, 3),
    )


def email_html(recipient: str, share_url: str, gif_url: str, width: int, height: int) -> str:
    """The snippet to paste into an email: the GIF, linking to the share page, named for the recipient."""
    from html import escape

    name = escape(recipient, quote=True)
    return (
        f'<!-- better-loom: personalized video for {name} -->\n'
        f'<a href="{escape(share_url, quote=True)}" style="display:inline-block;text-decoration:none">'
        f'<img src="{escape(gif_url, quote=True)}" alt="Video for {name}: press play" width="{width}" height="{height}" '
        f'style="display:block;border:0;max-width:100%;height:auto"></a>\n'
        f'<p style="margin:6px 0 0 0;font:14px Arial,sans-serif">'
        f'<a href="{escape(share_url, quote=True)}">Watch the video made for {name}</a></p>\n'
    )
