"""The fallback when a splice is impossible: every frame decoded, the edited ones patched, the whole
video encoded once (the reason is logged and reported by ``render_recipient``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from fractions import Fraction

import av

from loom import storage
from loom.edits import AudioInsert
from loom.media.aac import recipient_audio
from loom.media.concealment import decode_concealed
from loom.media.encode import PRESET
from loom.media.muxing import encoded_packets, interleave
from loom.media.patched_frames import patch_frame
from loom.prepared import PreparedTemplate

FULL_CRF = 16


def reencode_video(
    prepared: PreparedTemplate,
    inserts: list[AudioInsert] | Future,
    patches: Mapping[int, list],
    target: str,
    capture: dict[int, object] | None = None,
) -> int:
    """Decode every frame, patch the edited ones, encode once (used only when a splice is impossible)."""
    fps = Fraction(prepared.video.fps)
    with storage.kept_local_path(prepared.working_video_uri) as path, av.open(str(path)) as source:
        vin = source.streams.video[0]
        vin.thread_type = "AUTO"
        with av.open(target, "w", format="mp4", options={"movflags": "+faststart"}) as out:
            vout = out.add_stream("libx264", rate=fps)
            vout.width, vout.height = vin.codec_context.width, vin.codec_context.height
            vout.pix_fmt = "yuv420p"
            vout.options = {"preset": PRESET, "crf": str(FULL_CRF)}
            audio = recipient_audio(out, prepared.audio_uri, inserts)

            counts: list[int] = []

            def frames() -> Iterator[av.VideoFrame]:
                count = 0
                for frame in decode_concealed(source, vin):
                    if count in patches:
                        frame = patch_frame(frame, patches[count])
                    if capture is not None and count in capture:
                        capture[count] = frame.to_ndarray(format="rgb24")
                    if frame.format.name != "yuv420p":
                        frame = frame.reformat(format="yuv420p")
                    frame.pts = count
                    frame.time_base = 1 / fps
                    count += 1
                    yield frame
                counts.append(count)

            for packet in interleave(encoded_packets(vout, frames()), audio):
                out.mux(packet)
    return counts[0] if counts else 0
