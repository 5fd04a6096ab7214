"""The splice: the working video's packets copied, the planned GOPs re-encoded with the patches laid
on their frames, and the recipient's audio muxed beside them (``splice_video``).

The spans are encoded with the stream's profile, level, pixel format, colour tags, aspect and frame
rate, closed GOPs without B-frames; when their SPS/PPS differ from the stream's they carry their
own parameter-set id, added to the avcC record beside the stream's own. A recipient's regions
encode side by side while the packets before them are muxed, from original frames the first
recipient on this machine decoded and later ones read back (``frame_cache``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
from pydantic import BaseModel

from loom import storage
from loom.media import h264
from loom.media.cut_plan import PacketIndex, SpliceImpossible, gop_regions
from loom.media.encode import SpanEncoder, x264_profile
from loom.media.frames import prefetched
from loom.media.muxing import interleave
from loom.media.patched_frames import frames_with_patches
from loom.media.probe import VideoInfo


def _colour(cc) -> dict[str, int]:  # noqa: ANN001
    return {name: getattr(cc, name) for name in ("color_primaries", "color_trc", "colorspace", "color_range")}


def _span_encoder(video: VideoInfo, stream, avcc):  # noqa: ANN001, ANN202
    """A SpanEncoder matched to the stream, and the avcC record the output needs (None: unchanged).

    If the encoder's SPS/PPS under one of the stream's parameter-set ids equal the stream's own
    (a mezzanine, or spans planted at prepare time), the spans reuse them. Otherwise they get a
    free id and their parameter sets are added to the avcC record beside the stream's.
    """
    cc = stream.codec_context
    # yuvj420p: FFmpeg's name for full-range 4:2:0; x264 takes it and writes the full-range flag
    if cc.pix_fmt not in ("yuv420p", "yuvj420p") or x264_profile(video.profile) is None:
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
    fetch = storage.kept_local_path if cache_frames else storage.local_path  # a recipient's render, not prepare's
    with fetch(video_uri) as path, av.open(str(path)) as source:
        vin = source.streams.video[0]
        if vin.codec_context.name != "h264":
            raise SpliceImpossible(f"working video is {vin.codec_context.name}, not H.264")
        try:
            avcc = h264.AvcConfig.parse(vin.codec_context.extradata or b"")
        except ValueError as exc:
            raise SpliceImpossible(f"working video has no avcC record ({exc})") from None
        index = PacketIndex(source, vin, avcc.length_size, Path(path), video_uri if cache_frames else None)
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
            frames = prefetched(frames_with_patches(video_uri if cache_frames else None, path, first, stop, patches, capture))
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
                for packet in interleave(video_packets(), audio_packets):
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
