"""One PNG per recipient showing each edited segment before and after (its middle frame)."""

from __future__ import annotations

import io
import zipfile

import cv2
import numpy as np
from PIL import Image, ImageDraw

from loom import storage
from loom.media.frames import read_video_frames
from loom.media.patches import read_npz, write_npz
from loom.prepared import PreparedTemplate
from loom.visual.fonts import font_chain, load_font
from loom.visual.tracking import load_track

THUMB_WIDTH = 480
LABEL_HEIGHT = 26
GAP = 8


# Frames closer than this are reached by decoding on rather than by a new seek: a seek decodes
# from the keyframe before its target anyway (x264 puts one every 250 frames by default).
DECODE_ON_GAP = 150


def _frames_at(uri: str, indices: list[int], keep: bool = False) -> dict[int, np.ndarray]:
    """The frames at ``indices``, decoded in one forward pass per run of nearby indices (not one
    open and seek per frame); only the wanted frames are converted to RGB."""
    wanted = sorted(set(indices))
    runs: list[list[int]] = []
    for index in wanted:
        if runs and index - runs[-1][-1] <= DECODE_ON_GAP:
            runs[-1].append(index)
        else:
            runs.append([index])
    out: dict[int, np.ndarray] = {}
    for run in runs:
        keep = set(run)
        for index, frame in read_video_frames(uri, run[0], run[-1] + 1, keep=keep):
            if index in keep:
                out[index] = frame.to_ndarray(format="rgb24")
    return out


def _thumb(frame: np.ndarray | None, width: int, height: int) -> np.ndarray:
    if frame is None:
        out = np.full((height, width, 3), 40, np.uint8)
        cv2.line(out, (0, 0), (width - 1, height - 1), (200, 60, 60), 2)
        return out
    shrink = width < frame.shape[1]
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _segments(prepared: PreparedTemplate) -> list[tuple[str, str, int, tuple[float, float, float, float] | None]]:
    """(id, kind, middle frame, box on that frame) for every voice and visual segment, in time order."""
    items = []
    for seg in prepared.template.voice_segments:
        first, stop = prepared.segment_frames(seg.start_time, seg.end_time)
        items.append((seg.start_time, seg.id, "voice", (first + stop - 1) // 2, None))
    for seg in prepared.template.visual_segments:
        first, stop = prepared.segment_frames(seg.start_time, seg.end_time)
        middle = (first + stop - 1) // 2
        box = None
        if seg.id in prepared.tracks and storage.exists(prepared.tracks[seg.id]):
            track = load_track(prepared.tracks[seg.id])
            # the edited frame nearest the middle: a flagged (unedited) one would show no change
            found = [f for f in range(first, stop) if track.box_at(f) is not None]
            middle = min(found, key=lambda f: (abs(f - middle), f)) if found else middle
            box = track.box_at(middle)
        items.append((seg.start_time, seg.id, f"visual {seg.segment_type}", middle, box))
    items.sort(key=lambda t: (t[0], t[1]))
    return [t[1:] for t in items]


def preview_frames(prepared: PreparedTemplate) -> list[int]:
    """The frames a preview shows (one per segment): what a render should ``capture``."""
    return [row[2] for row in _segments(prepared)] or [prepared.video.frame_count // 2]


def _before_frames(prepared: PreparedTemplate, indices: list[int]) -> dict[int, np.ndarray]:
    """The working video's frames at ``indices``, decoded once per template version and kept in
    its prepared folder (every recipient's preview shows the same "before" frames)."""
    cache = storage.join(prepared.root, "preview-before.npz")
    wanted = sorted(set(indices))
    if storage.exists(cache):
        try:
            data = read_npz(cache)
            if sorted(int(k) for k in data) == wanted:
                return {int(k): v for k, v in data.items()}
        except (OSError, ValueError, zipfile.BadZipFile):
            pass  # unreadable (e.g. a damaged file): made again below
    frames = _frames_at(prepared.working_video_uri, wanted, keep=True)
    write_npz(cache, {str(k): v for k, v in frames.items()})
    return frames


def make_preview(
    prepared: PreparedTemplate,
    output_video_uri: str,
    out_png_uri: str,
    after: dict[int, np.ndarray | None] | None = None,
    reencoded: list[tuple[int, int]] | None = None,
) -> str:
    """Write a PNG with, per segment, the original and the output frame side by side; return its URI.

    ``after`` and ``reencoded`` come from the render (its captured frames and the spans it
    re-encoded): output frames outside those spans are the working video's own, so nothing is
    decoded from the output. Without them, the output is decoded at each segment's middle frame.
    """
    png = preview_png(prepared, output_video_uri, after, reencoded)
    if png is None:  # not reached: the output may be decoded here
        raise RuntimeError(f"no preview made for {output_video_uri}")
    storage.write_bytes(out_png_uri, png)
    return out_png_uri


def preview_png(
    prepared: PreparedTemplate,
    output_video_uri: str,
    after: dict[int, np.ndarray | None] | None = None,
    reencoded: list[tuple[int, int]] | None = None,
    decode_output: bool = True,
) -> bytes | None:
    """The preview's PNG bytes (see ``make_preview``). With ``decode_output`` False (the output
    still being written) it returns None where a frame would have to be decoded from the output."""
    vw, vh = prepared.video.width, prepared.video.height
    tw = THUMB_WIDTH
    th = max(1, int(round(vh * tw / vw)))
    sx = tw / vw
    rows = _segments(prepared) or [("video", "whole", prepared.video.frame_count // 2, None)]
    font = load_font(font_chain()[0], 15)
    width = 2 * tw + 3 * GAP
    height = len(rows) * (th + LABEL_HEIGHT + GAP) + GAP
    sheet = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    indices = [row[2] for row in rows]
    before = _before_frames(prepared, indices)
    if after is None or reencoded is None:
        if not decode_output:
            return None
        shown = _frames_at(output_video_uri, indices)
    else:
        def copied(index: int) -> bool:
            return not any(a <= index < b for a, b in reencoded)

        shown = {i: before[i] for i in indices if copied(i) and i in before}
        shown.update({i: f for i, f in after.items() if f is not None})
        missing = [i for i in indices if i not in shown]
        if missing and not decode_output:
            return None
        if missing:
            shown.update(_frames_at(output_video_uri, missing))
    frames = {prepared.working_video_uri: before, output_video_uri: shown}
    y = GAP
    for seg_id, kind, index, box in rows:
        seconds = index / float(prepared.video.frame_rate)
        for col, (label, uri) in enumerate((("before", prepared.working_video_uri), ("after", output_video_uri))):
            thumb = _thumb(frames[uri].get(index), tw, th)
            if box is not None and label == "before":  # outline only the original: the edit should not show
                x, by, w, h = (v * sx for v in box)
                cv2.rectangle(thumb, (int(x) - 2, int(by) - 2), (int(x + w) + 2, int(by + h) + 2), (255, 200, 0), 1)
            x0 = GAP + col * (tw + GAP)
            draw.text((x0, y + 4), f"{seg_id} ({kind}) - {label} - frame {index} ({seconds:.2f}s)", font=font, fill=(235, 235, 235))
            sheet.paste(Image.fromarray(thumb), (x0, y + LABEL_HEIGHT))
        y += th + LABEL_HEIGHT + GAP
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", compress_level=3)  # a quarter of the default's time, ~10 % larger
    return buf.getvalue()
