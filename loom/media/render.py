"""One recipient's video: the working video's packets, with only the edited GOPs re-encoded (smart cut).

For each union of patch-set frame ranges the renderer re-encodes from the IDR picture at or before
the span to one frame before the IDR at or after its end, decoding only those frames, and copies
every other packet unchanged. Prepare puts IDR pictures on every cut frame (mezzanine or planted
keyframes), so in practice exactly the span is re-encoded and recipients share all other packets.
The spans are encoded with the stream's profile, level, pixel format, colour tags, aspect and frame
rate, closed GOPs without B-frames; when their SPS/PPS differ from the stream's they carry their
own parameter-set id, added to the avcC record beside the stream's own. The audio is the
template's AAC track with only the voice windows re-encoded (``loom.media.aac``). If a splice is
impossible the whole video is re-encoded once, and the reason logged and reported.

A recipient's regions encode side by side while the packets before them are muxed, from original
frames the first recipient on this machine decoded and later ones read back (``frame_cache``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from loom import storage
from loom.edits import AudioInsert, PatchSetRef
from loom.media.frames import prefetched
from loom.media.patches import FramePatches
from loom.media.probe import VideoInfo
from loom.prepared import PreparedTemplate

log = logging.getLogger("loom.media")

FULL_CRF = 16


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


class SpliceImpossible(Exception):
    """The working video cannot be spliced; the reason goes into the report and the log."""


# ---------------------------------------------------------------- planning


def edited_spans(ranges: list[tuple[int, int]], frame_count: int) -> list[tuple[int, int]]:
    """Union of frame ranges, clipped to the video, merged where they touch."""
    merged: list[tuple[int, int]] = []
    for first, stop in sorted((max(0, a), min(frame_count, b)) for a, b in ranges):
        if stop <= first:
            continue
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((first, stop))
    return merged


def gop_regions(spans: list[tuple[int, int]], keyframes: list[int], frame_count: int) -> list[tuple[int, int]]:
    """Each span widened to [IDR at or before it, next IDR at or after its end), merged."""
    regions: list[tuple[int, int]] = []
    for first, stop in spans:
        start = max((k for k in keyframes if k <= first), default=0)
        end = min((k for k in keyframes if k >= stop), default=frame_count)
        if regions and start <= regions[-1][1]:
            regions[-1] = (regions[-1][0], max(regions[-1][1], end))
        else:
            regions.append((start, end))
    return regions


class _PacketIndex:
    """Timing of every video packet in decode order (headers only, nothing decoded).

    With ``cache_as`` (the video's URI) the index is kept in the local cache, keyed like the frame
    cache by URI, size and modification time, so later renders of the video skip the pass."""

    def __init__(self, container, stream, length_size: int, path: Path, cache_as: str | None = None) -> None:  # noqa: ANN001
        lists = _read_index(cache_as, path) if cache_as is not None else None
        if lists is None:
            lists = _scan_packets(container, stream, length_size)
            if cache_as is not None:
                _write_index(cache_as, path, *lists)
        self.pts, self.dts, self.duration, idr_pts = lists
        order = sorted(self.pts)
        self.display_of_pts = {p: i for i, p in enumerate(order)}
        self.display = [self.display_of_pts[p] for p in self.pts]  # display index per decode position
        self.idr_frames = sorted(self.display_of_pts[p] for p in idr_pts)
        self.frame_count = len(order)

    def check_contiguous(self, regions: list[tuple[int, int]]) -> None:
        """Each region's packets must be one run in decode order (closed GOPs), or it cannot be cut out."""
        for first, stop in regions:
            positions = [i for i, d in enumerate(self.display) if first <= d < stop]
            if positions and positions[-1] - positions[0] + 1 != len(positions):
                raise SpliceImpossible(f"frames {first}-{stop} are not one closed run of packets (open GOP)")


def _scan_packets(container, stream, length_size: int) -> tuple[list[int], list[int], list[int], list[int]]:  # noqa: ANN001
    from loom.media import h264

    pts: list[int] = []
    dts: list[int] = []
    duration: list[int] = []
    idr_pts: list[int] = []
    for packet in container.demux(stream):
        if packet.size == 0 or packet.pts is None:
            continue
        pts.append(packet.pts)
        dts.append(packet.dts if packet.dts is not None else packet.pts)
        duration.append(packet.duration or 0)
        if packet.is_keyframe and h264.is_idr_packet(bytes(packet), length_size):
            idr_pts.append(packet.pts)
    return pts, dts, duration, idr_pts


_INDEX_FIELDS = ("pts", "dts", "duration", "idr_pts")


def _read_index(uri: str, path: Path) -> tuple[list[int], list[int], list[int], list[int]] | None:
    from loom import local_cache

    data = local_cache.read_json("index", local_cache.file_identity(uri, path), "packets.json")
    try:
        lists = tuple([int(v) for v in data[name]] for name in _INDEX_FIELDS)  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None
    if len({len(v) for v in lists[:3]}) != 1:
        return None
    return lists  # type: ignore[return-value]


def _write_index(uri: str, path: Path, *lists: list[int]) -> None:
    from loom import local_cache

    local_cache.write_json("index", local_cache.file_identity(uri, path), "packets.json", dict(zip(_INDEX_FIELDS, lists)))


# ---------------------------------------------------------------- patches


def load_patches(patch_sets: list[PatchSetRef]) -> tuple[FramePatches, list[tuple[int, int]]]:
    """Frame index -> patches, lip-sync sets first, then visual sets (the order they composite in),
    and each non-empty set's frame range [first patched, last patched + 1). Sets handed over in
    memory (``patches.hand_over``) are drawn frame by frame as the encoder asks for them."""
    from loom.media.patches import load_patch_source

    by_frame = FramePatches()
    ranges: list[tuple[int, int]] = []
    for ref in sorted(patch_sets, key=lambda r: 0 if r.kind == "lipsync" else 1):
        span = by_frame.add(load_patch_source(ref.uri))
        if span is not None:
            ranges.append(span)
    return by_frame, ranges


def patch_frame(frame, patches: list):  # noqa: ANN001, ANN201
    """The frame with patches composited; pixels outside the patch boxes are the decoded original's."""
    import av

    from loom.media.overlay import patch_yuv420p, plane_views
    from loom.media.patches import apply_patches

    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        full = int(frame.color_range or 0) == 2  # AVCOL_RANGE_JPEG
        patch_yuv420p(*plane_views(frame), patches, frame.colorspace, full)
        return frame
    rgb = frame.to_ndarray(format="rgb24")
    apply_patches(rgb, patches)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=frame.format.name)


def _frames_with_patches(
    uri: str | None, path: Path, first: int, stop: int, patches: Mapping[int, list], capture: dict[int, object] | None = None
) -> Iterator:
    """Frames [first, stop) patched; those whose index is a key of ``capture`` are also kept there
    as RGB arrays (the preview's "after" frames, without decoding the output again). With the
    video's ``uri`` the original frames go through the frame cache (read from it when an earlier
    recipient's render decoded them); without, they are decoded."""
    from loom.media.frame_cache import span_frames
    from loom.media.frames import read_video_frames

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


# ---------------------------------------------------------------- audio


def _interleave(video: Iterator, audio: Iterator) -> Iterator:
    """Merge two packet streams by decode time (each already in order, each on one time base)."""
    scale: dict[int, float] = {}

    def key(packet) -> float:  # noqa: ANN001
        ts = packet.dts if packet.dts is not None else packet.pts
        index = packet.stream.index
        if index not in scale:
            scale[index] = float(packet.time_base)
        return (ts or 0) * scale[index]

    v, a = next(video, None), next(audio, None)
    kv = key(v) if v is not None else 0.0
    ka = key(a) if a is not None else 0.0
    while v is not None or a is not None:
        if a is None or (v is not None and kv <= ka):
            yield v
            v = next(video, None)
            kv = key(v) if v is not None else 0.0
        else:
            yield a
            a = next(audio, None)
            ka = key(a) if a is not None else 0.0


# ---------------------------------------------------------------- splice


def _colour(cc) -> dict[str, int]:  # noqa: ANN001
    return {name: getattr(cc, name) for name in ("color_primaries", "color_trc", "colorspace", "color_range")}


def _span_encoder(video: VideoInfo, stream, avcc):  # noqa: ANN001, ANN202
    """A SpanEncoder matched to the stream, and the avcC record the output needs (None: unchanged).

    If the encoder's SPS/PPS under one of the stream's parameter-set ids equal the stream's own
    (a mezzanine, or spans planted at prepare time), the spans reuse them. Otherwise they get a
    free id and their parameter sets are added to the avcC record beside the stream's.
    """
    from loom.media import h264
    from loom.media.encode import SpanEncoder, x264_profile

    cc = stream.codec_context
    if cc.pix_fmt != "yuv420p" or x264_profile(video.profile) is None:
        raise SpliceImpossible(f"cannot match H.264 {video.profile} {cc.pix_fmt} with the span encoder")
    fps = Fraction(video.fps)

    def make(param_id: int) -> SpanEncoder:
        return SpanEncoder(cc.width, cc.height, cc.pix_fmt, fps, video.profile, video.level, _colour(cc),
                           length_size=avcc.length_size, param_set_id=param_id,
                           sample_aspect=cc.sample_aspect_ratio or stream.sample_aspect_ratio)

    known = set(avcc.sps) | set(avcc.pps)
    for param_id in sorted(avcc.sps_ids() & avcc.pps_ids()):
        encoder = make(param_id)
        if set(encoder.probe_headers()) <= known:
            encoder.keep_headers = False
            return encoder, None
    free = sorted(set(range(32)) - avcc.sps_ids() - avcc.pps_ids())
    if not free:
        raise SpliceImpossible("no free parameter-set id for the re-encoded spans")
    encoder = make(free[0])
    headers = encoder.probe_headers()
    extended = h264.AvcConfig(avcc.profile, avcc.compat, avcc.level, avcc.length_size, list(avcc.sps), list(avcc.pps), avcc.tail)
    extended.sps += [n for n in headers if h264.nal_type(n) == h264.NAL_SPS]
    extended.pps += [n for n in headers if h264.nal_type(n) == h264.NAL_PPS]
    return encoder, extended.build()


def _region_workers(regions: int) -> int:
    """How many regions encode at once: one per core, at most four (x264 threads within each)."""
    return max(1, min(regions, os.cpu_count() or 1, 4))


class SpliceResult(BaseModel):
    frames: int
    reencoded_frames: int
    copied_packets: int
    regions: list[tuple[int, int]]


def splice_video(
    video_uri: str,
    video: VideoInfo,
    spans: list[tuple[int, int]],
    patches: Mapping[int, list],
    target: str,
    audio: Callable | None = None,
    idr_frames: Iterable[int] = (),
    crf: int | None = None,
    capture: dict[int, object] | None = None,
    cache_frames: bool = False,
    encoded: Callable[[list[tuple[int, int]]], None] | None = None,
) -> SpliceResult:
    """Write ``target`` (MP4): the GOPs around ``spans`` re-encoded with ``patches``, all else copied.

    ``idr_frames``: frames that must become IDR pictures (their GOPs are re-encoded too).
    ``audio(out)``: adds an audio stream to the output and returns an iterator of its packets.
    ``capture``: re-encoded frames whose index is a key get the pixels given to the encoder (RGB) stored there.
    ``cache_frames``: keep the regions' decoded frames for later renders of the same video (``frame_cache``).
    ``encoded(regions)``: called once every region is encoded (``capture`` is then complete), from
    an encoding thread, while the rest of the file is still being muxed.
    """
    import av

    from loom.media import h264

    fetch = storage.kept_local_path if cache_frames else storage.local_path  # a recipient's render, not prepare's
    with fetch(video_uri) as path, av.open(str(path)) as source:
        vin = source.streams.video[0]
        if vin.codec_context.name != "h264":
            raise SpliceImpossible(f"working video is {vin.codec_context.name}, not H.264")
        try:
            avcc = h264.AvcConfig.parse(vin.codec_context.extradata or b"")
        except ValueError as exc:
            raise SpliceImpossible(f"working video has no avcC record ({exc})") from None
        index = _PacketIndex(source, vin, avcc.length_size, Path(path), video_uri if cache_frames else None)
        if not index.idr_frames or index.idr_frames[0] != 0:
            raise SpliceImpossible("working video does not start with an IDR picture")
        forced = sorted(set(idr_frames) - set(index.idr_frames))
        regions = gop_regions(sorted(spans + [(f, f + 1) for f in forced]), index.idr_frames, index.frame_count)
        index.check_contiguous(regions)
        new_avcc = None
        encoder = None
        if regions:
            encoder, new_avcc = _span_encoder(video, vin, avcc)
            if crf is not None:
                encoder.crf = crf

        def encode_region(first: int, stop: int) -> list[tuple[bytes, bool]]:
            idr_at = [f - first for f in forced if first <= f < stop]
            frames = prefetched(_frames_with_patches(video_uri if cache_frames else None, path, first, stop, patches, capture))
            packets = list(encoder.encode(frames, idr_at=idr_at))
            if len(packets) != stop - first:
                raise SpliceImpossible(f"encoder gave {len(packets)} packets for {stop - first} frames")
            return packets

        region_of = {d: region for region in regions for d in range(*region)}
        tb = vin.time_base
        # The audio track starts with the first frame: a stream that starts later is moved to 0.
        shift = max(0, min(index.pts))
        counts = {"copied": 0, "frames": 0}
        source.seek(0)
        # Regions are independent closed GOPs: they encode side by side (one x264 instance at this
        # size leaves a third of two cores idle) while the packets before them are already muxed.
        with ThreadPoolExecutor(max_workers=_region_workers(len(regions)), thread_name_prefix="loom-span") as pool, \
                av.open(target, "w", format="mp4", options={"movflags": "+faststart"}) as out:
            jobs = {first: pool.submit(encode_region, first, stop) for first, stop in regions}
            if encoded is not None:
                _when_all_succeed(list(jobs.values()), lambda: encoded(list(regions)))
            vout = out.add_stream_from_template(vin)
            vout.time_base = tb
            if new_avcc is not None:
                vout.codec_context.extradata = new_avcc
            audio_packets = audio(out) if audio is not None else iter(())

            def video_packets() -> Iterator:
                done: set[int] = set()
                for packet in source.demux(vin):
                    if packet.size == 0 or packet.pts is None:
                        continue
                    region = region_of.get(index.display_of_pts[packet.pts])
                    if region is None:
                        if shift:
                            packet.pts, packet.dts = packet.pts - shift, packet.dts - shift if packet.dts is not None else None
                        packet.stream = vout
                        counts["copied"] += 1
                        counts["frames"] += 1
                        yield packet
                        continue
                    if region[0] in done:
                        continue
                    done.add(region[0])
                    # The new packets take the display times of the frames they replace and the
                    # region's decode times in order (no B-frames: decode order = display order).
                    positions = [i for i, d in enumerate(index.display) if region[0] <= d < region[1]]
                    pts_sorted = sorted(index.pts[i] for i in positions)
                    dts_sorted = sorted(index.dts[i] for i in positions)
                    duration = sorted(index.duration[i] for i in positions)[len(positions) // 2]
                    for k, (payload, is_idr) in enumerate(jobs[region[0]].result()):
                        new = av.Packet(payload)
                        new.pts, new.dts = pts_sorted[k] - shift, min(dts_sorted[k], pts_sorted[k]) - shift
                        new.duration = duration
                        new.time_base = tb
                        new.is_keyframe = is_idr
                        new.stream = vout
                        counts["frames"] += 1
                        yield new

            try:
                for packet in _interleave(video_packets(), audio_packets):
                    out.mux(packet)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return SpliceResult(
        frames=counts["frames"],
        reencoded_frames=sum(stop - first for first, stop in regions),
        copied_packets=counts["copied"],
        regions=regions,
    )


def _when_all_succeed(jobs: list[Future], callback: Callable[[], None]) -> None:
    """Call ``callback`` once, on the thread that finishes the last of ``jobs``, if none failed."""
    if not jobs:
        callback()
        return
    left = [len(jobs)]
    lock = threading.Lock()

    def finished(_: Future) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last and all(not job.cancelled() and job.exception() is None for job in jobs):
            callback()

    for job in jobs:
        job.add_done_callback(finished)


# ---------------------------------------------------------------- full re-encode


def _full(
    prepared: PreparedTemplate,
    inserts: list[AudioInsert] | Future,
    patches: Mapping[int, list],
    target: str,
    capture: dict[int, object] | None = None,
) -> int:
    """Decode every frame, patch the edited ones, encode once (used only when a splice is impossible)."""
    import av

    from loom.media.aac import recipient_audio

    from loom.media.encode import PRESET

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

            def video_packets() -> Iterator:
                count = 0
                for frame in source.decode(vin):
                    if count in patches:
                        frame = patch_frame(frame, patches[count])
                    if capture is not None and count in capture:
                        capture[count] = frame.to_ndarray(format="rgb24")
                    if frame.format.name != "yuv420p":
                        frame = frame.reformat(format="yuv420p")
                    frame.pts = count
                    frame.time_base = 1 / fps
                    count += 1
                    yield from vout.encode(frame)
                yield from vout.encode(None)
                counts.append(count)

            counts: list[int] = []
            for packet in _interleave(video_packets(), audio):
                out.mux(packet)
    return counts[0] if counts else 0


# ---------------------------------------------------------------- entry point


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
    import av

    from loom.allocator import keep_freed_memory
    from loom.media.aac import RecipientAudio

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
            frames = _full(prepared, inserts, patches, str(target), capture)
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
