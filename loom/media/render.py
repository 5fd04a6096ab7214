"""One recipient's video: the working video's packets, with only the edited GOPs re-encoded (smart cut).

For each union of patch-set frame ranges the renderer re-encodes from the IDR picture at or before
the span to one frame before the IDR at or after its end, decoding only those frames, and copies
every other packet unchanged. Prepare puts IDR pictures on every cut frame (mezzanine or planted
keyframes), so in practice exactly the span is re-encoded and recipients share all other packets.
The audio is the template's AAC track with only the voice windows re-encoded (``loom.media.aac``).
If a splice is impossible the whole video is re-encoded once, and the reason logged and reported.

The parts: the plan (``cut_plan``: which frames, GOPs and packets), the patched frames
(``patched_frames``), the splice (``splice``) and the full re-encode (``reencode``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Literal

import av
from pydantic import BaseModel, Field

from loom import storage
from loom.allocator import keep_freed_memory
from loom.edits import AudioInsert, PatchSetRef
from loom.media.aac import RecipientAudio
from loom.media.cut_plan import SpliceImpossible, edited_spans
from loom.media.patched_frames import load_patches
from loom.media.reencode import reencode_video
from loom.media.splice import splice_video
from loom.prepared import PreparedTemplate

log = logging.getLogger("loom.media")


class RenderReport(BaseModel):
    output_uri: str
    mode: Literal["splice", "full"]
    fallback_reason: str | None = None
    frames: int
    reencoded_frames: int
    copied_packets: int
    edited_spans: list[tuple[int, int]] = Field(default_factory=list, description="frames [first, stop) with patches")
    reencoded_spans: list[tuple[int, int]] = Field(default_factory=list, description="GOP-aligned frames re-encoded")
    seconds: float


def render_recipient(
    prepared: PreparedTemplate,
    inserts: list[AudioInsert] | Future,
    patch_sets: list[PatchSetRef],
    out_uri: str,
    capture: dict[int, object] | None = None,
    encoded: Callable[[list[tuple[int, int]]], None] | None = None,
) -> RenderReport:
    """Write the recipient's MP4: edited GOPs re-encoded, every other packet copied, audio mixed once.

    ``capture``: frames whose index is a key and which are re-encoded get the pixels given to the
    encoder (RGB arrays) stored there; every other frame of the output is the working video's own.
    ``inserts`` may be a ``Future`` of them: the video spans encode while the lines are spoken.
    ``encoded(regions)``: see ``splice_video`` (a splice only; a report whose mode is "full"
    supersedes what it was told).
    """
    started = time.perf_counter()
    keep_freed_memory()
    frame_count = prepared.video.frame_count
    patches, ranges = load_patches(patch_sets)
    spans = edited_spans(ranges, frame_count)
    with storage.staged_output(out_uri, suffix=".mp4") as target:
        try:
            tracks: list[RecipientAudio] = []

            def attach_audio(out) -> Iterator:  # noqa: ANN001
                # made once the video regions are encoding; its windows encode beside them
                tracks.append(RecipientAudio(prepared.audio_uri, inserts))
                return tracks[-1].attach(out)

            try:
                result = splice_video(prepared.working_video_uri, prepared.video, spans, patches, str(target),
                                      audio=attach_audio, capture=capture, cache_frames=True, encoded=encoded)
            finally:
                for track in tracks:
                    track.close()
            mode, reason = "splice", None
            frames, reencoded, copied, regions = (result.frames, result.reencoded_frames, result.copied_packets,
                                                  result.regions)
        except SpliceImpossible as exc:
            reason = str(exc)
        except av.error.FFmpegError as exc:  # a muxer or codec refusing the splice: still make the video
            reason = f"splice failed: {exc}"
        if reason is not None:
            log.warning("full re-encode of %s: %s", out_uri, reason)
            if capture is not None:
                capture.update(dict.fromkeys(capture))  # nothing kept from the failed splice
            frames = reencode_video(prepared, inserts, patches, str(target), capture)
            mode, reencoded, copied, regions = "full", frames, 0, [(0, frames)]
    return RenderReport(
        output_uri=out_uri,
        mode=mode,
        fallback_reason=reason,
        frames=frames,
        reencoded_frames=reencoded,
        copied_packets=copied,
        edited_spans=spans,
        reencoded_spans=regions,
        seconds=round(time.perf_counter() - started, 3),
    )
