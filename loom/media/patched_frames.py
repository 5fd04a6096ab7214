"""Decoded frames with a recipient's patches laid on them: the patch sets in compositing order,
one frame patched in its own colour space, and a span of frames patched as the encoder takes them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import av

from loom.edits import PatchSetRef
from loom.media.cut_plan import SpliceImpossible
from loom.media.frame_cache import span_frames
from loom.media.frames import read_video_frames
from loom.media.overlay import patch_yuv420p, plane_views
from loom.media.patches import FramePatches, apply_patches, load_patch_source


def load_patches(patch_sets: list[PatchSetRef]) -> tuple[FramePatches, list[tuple[int, int]]]:
    """Frame index -> patches, lip-sync sets first, then visual sets (the order they composite in),
    and each non-empty set's frame range [first patched, last patched + 1). Sets handed over in
    memory (``patches.hand_over``) are drawn frame by frame as the encoder asks for them."""
    by_frame = FramePatches()
    ranges: list[tuple[int, int]] = []
    for ref in sorted(patch_sets, key=lambda r: 0 if r.kind == "lipsync" else 1):
        span = by_frame.add(load_patch_source(ref.uri))
        if span is not None:
            ranges.append(span)
    return by_frame, ranges


def patch_frame(frame, patches: list):  # noqa: ANN001, ANN201
    """The frame with patches composited; pixels outside the patch boxes are the decoded original's."""
    if frame.format.name in ("yuv420p", "yuvj420p") and frame.width % 2 == 0 and frame.height % 2 == 0:
        # AVCOL_RANGE_JPEG, or FFmpeg's full-range 4:2:0 format (yuvj420p) whatever its tag says
        full = int(frame.color_range or 0) == 2 or frame.format.name == "yuvj420p"
        patch_yuv420p(*plane_views(frame), patches, frame.colorspace, full)
        return frame
    rgb = frame.to_ndarray(format="rgb24")
    apply_patches(rgb, patches)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=frame.format.name)


def frames_with_patches(
    uri: str | None, path: Path, first: int, stop: int, patches: Mapping[int, list], capture: dict[int, object] | None = None
) -> Iterator:
    """Frames [first, stop) patched; those whose index is a key of ``capture`` are also kept there
    as RGB arrays (the preview's "after" frames, without decoding the output again). With the
    video's ``uri`` the original frames go through the frame cache (read from it when an earlier
    recipient's render decoded them); without, they are decoded."""
    expected = first
    originals = (span_frames(uri, path, first, stop, to_write=patches) if uri is not None
                 else read_video_frames(str(path), first, stop, threads=False))
    for index, frame in originals:
        if index != expected:
            raise SpliceImpossible(f"decoding frames {first}-{stop} gave frame {index} where {expected} was due")
        expected += 1
        if index in patches:
            frame = patch_frame(frame, patches[index])
        if capture is not None and index in capture:
            capture[index] = frame.to_ndarray(format="rgb24")
        yield frame
    if expected != stop:
        raise SpliceImpossible(f"decoding frames {first}-{stop} stopped at {expected}")
