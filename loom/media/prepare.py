"""Make a recording ready to splice, once per template version: keep it or make a mezzanine, decode its audio.

An H.264 MP4/MOV with a constant frame rate, no rotation, an even size, 4:2:0 pixels and IDR
keyframes is kept: recipients copy its packets. Where a cut falls inside a GOP, that GOP alone is
re-encoded once with an IDR on the cut frame (a "planted" copy, ``root/working.mp4``), so a
recipient re-encodes exactly its spans and every other packet is shared. Anything else gets one visually lossless
H.264 mezzanine (x264 CRF 8, constant frame rate, rotation applied, keyframes forced at every
cut time so an edited span re-encodes only its own frames).
"""

from __future__ import annotations

import logging
import subprocess
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import imageio_ffmpeg
from pydantic import BaseModel, Field

from loom import storage
from loom.allocator import keep_freed_memory
from loom.errors import InputError
from loom.media import h264
from loom.media.aac import aac_track_uri, encode_aac_track
from loom.media.audio_mix import PcmTrack, extract_audio
from loom.media.concealment import Concealment, demux_readable, scan_video
from loom.media.cut_plan import SpliceImpossible
from loom.media.encode import MEZZANINE_CRF, mezzanine_x264_args, x264_profile
from loom.media.probe import VideoInfo, probe_video
from loom.media.splice import splice_video

log = logging.getLogger("loom.media")

_KEPT_CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2"}
_KEPT_SUFFIXES = {".mp4", ".m4v", ".mov"}
_STANDARD_RATES = [Fraction(24000, 1001), Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30),
                   Fraction(48), Fraction(50), Fraction(60000, 1001), Fraction(60)]


class PreparedMedia(BaseModel):
    source: VideoInfo
    video: VideoInfo
    working_video_uri: str
    mezzanine: bool
    mezzanine_reason: str | None = None
    audio_uri: str
    audio_sample_rate: int
    audio_channels: int
    concealed: list[Concealment] = Field(default_factory=list)


def mezzanine_reason(info: VideoInfo, uri: str) -> str | None:
    """Why this recording cannot be spliced as it is, or None when its packets can be kept."""

    suffix = Path(uri.split("?")[0]).suffix.lower()
    if info.container not in _KEPT_CONTAINERS or suffix not in _KEPT_SUFFIXES:
        return f"container {info.container} ({suffix or 'no suffix'}) is not MP4/MOV"
    if info.codec != "h264":
        return f"video codec {info.codec} is not H.264"
    if not info.constant_frame_rate:
        return "variable frame rate"
    if info.rotation:
        return f"rotation metadata ({info.rotation} degrees)"
    if info.width % 2 or info.height % 2:
        return f"odd frame size {info.width}x{info.height}"
    if info.pix_fmt not in ("yuv420p", "yuvj420p"):  # yuvj420p: full-range 4:2:0, which the spans keep
        return f"pixel format {info.pix_fmt} is not yuv420p"
    if x264_profile(info.profile) is None:
        return f"H.264 profile {info.profile} cannot be matched by the span encoder"
    if not info.keyframes or info.keyframes[0] != 0:
        return "the stream does not start with a keyframe"
    if not _keyframes_are_idr(uri):
        return "keyframes are not IDR pictures (open GOP)"
    return None


def _keyframes_are_idr(uri: str) -> bool:
    with storage.local_path(uri) as path, av.open(str(path)) as container:
        stream = container.streams.video[0]
        try:
            length_size = h264.AvcConfig.parse(stream.codec_context.extradata or b"").length_size
        except ValueError:
            return False
        for packet in demux_readable(container, stream):
            if packet.size and packet.is_keyframe and not h264.is_idr_packet(bytes(packet), length_size):
                return False
    return True


def working_rate(info: VideoInfo) -> Fraction:
    """The mezzanine's constant frame rate: the source's, snapped to a standard rate when within 1%."""
    rate = info.frame_rate if info.constant_frame_rate else Fraction(info.frame_count) / Fraction(info.duration).limit_denominator(100000)
    for standard in _STANDARD_RATES:
        if abs(rate - standard) / standard < 0.01:
            return standard
    return Fraction(rate).limit_denominator(1001)


def make_mezzanine(
    source: VideoInfo, src_uri: str, cut_times: list[float], out_uri: str, frames_lost: bool = False
) -> VideoInfo:
    """Encode the visually lossless H.264 working video with keyframes at every cut (ffmpeg binary).

    ``frames_lost``: some video packets cannot be decoded; the timeline then follows the frames'
    timestamps (the frame before a lost one is shown in its place) rather than their count.
    """

    fps = working_rate(source)
    width, height = (source.height, source.width) if source.rotation in (90, 270) else (source.width, source.height)
    if source.constant_frame_rate and not (frames_lost and source.container != "avi"):
        # one output frame per decoded frame, renumbered: AVI's guessed timestamps (packed B-frames)
        # can be out of order or start late, while the decoder's output order is the display order
        # (on a time base of one frame: N/(fps*TB) on the stream's own base, e.g. AVI's 125/2997, can
        # round two frames onto one time and the fps filter then drops one)
        filters = [f"settb={fps.denominator}/{fps.numerator}", "setpts=N", f"fps={fps.numerator}/{fps.denominator}"]
    else:  # variable frame rate: resample the timeline to a constant rate from the first frame
        filters = ["setpts=PTS-STARTPTS", f"fps={fps.numerator}/{fps.denominator}"]
    if width % 2 or height % 2:  # x264 4:2:0 needs even sizes: extend by one smeared row/column
        pad_w, pad_h = width % 2, height % 2
        filters.append(f"pad={width + pad_w}:{height + pad_h}:0:0")
        filters.append(f"fillborders=right={pad_w}:bottom={pad_h}:mode=smear")
    # Each cut lands on the frame frame_span() gives it: round(t * fps); force that frame's time.
    key_times = sorted({round(t * fps) / fps for t in cut_times if t > 0})
    force = ",".join(f"{max(0.0, float(k) - 0.25 / float(fps)):.6f}" for k in key_times)
    with storage.local_path(src_uri) as src, storage.staged_output(out_uri, suffix=".mp4") as target:
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-i", str(src),
               "-map", "0:v:0", "-an", "-sn", "-dn", "-map_metadata", "-1"]
        if filters:
            cmd += ["-vf", ",".join(filters)]
        cmd += ["-fps_mode", "passthrough", *mezzanine_x264_args(fps)]
        if force:
            cmd += ["-force_key_frames", force]
        cmd += ["-movflags", "+faststart", "-f", "mp4", str(target)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            tail = " | ".join(result.stderr.strip().splitlines()[-5:])
            raise InputError("base_video_path", f"cannot convert {src_uri} to a working H.264 video: {tail}",
                             "check that the file plays, or re-export it as H.264 MP4")
    return probe_video(out_uri)


def _cut_frames_without_idr(info: VideoInfo, cut_times: list[float]) -> list[int]:
    """Frames where a segment starts or ends (``round(t * fps)``, as frame_span counts) that are not IDR."""
    frames = {round(t * info.frame_rate) for t in cut_times}
    return sorted(f for f in frames if 0 < f < info.frame_count and f not in set(info.keyframes))


def plant_keyframes(source: VideoInfo, src_uri: str, frames: list[int], out_uri: str) -> VideoInfo:
    """Copy of an H.264 recording with IDR pictures at ``frames``: only the GOPs holding them are
    re-encoded (visually lossless), every other packet is the source's. Recipients then re-encode
    exactly their spans, and share every packet outside them."""

    with storage.staged_output(out_uri, suffix=".mp4") as target:
        try:
            splice_video(src_uri, source, [], {}, str(target), idr_frames=frames, crf=MEZZANINE_CRF)
        except SpliceImpossible as exc:
            raise InputError("base_video_path", f"cannot place keyframes in {src_uri}: {exc}",
                             "re-export the recording as H.264 MP4 with closed GOPs") from None
    return probe_video(out_uri)


def prepare_media(base_video_uri: str, cut_times: list[float], root: str) -> PreparedMedia:
    """Probe, keep or convert the video; decode the audio once to ``root/audio.wav`` and encode it
    once to ``root/audio.m4a`` (AAC), which recipients copy outside their voice windows."""

    keep_freed_memory()
    source = probe_video(base_video_uri)
    video_start = _video_start(base_video_uri)
    wav_uri = storage.join(root, "audio.wav")

    def audio_track(duration: float) -> PcmTrack:
        track = extract_audio(base_video_uri, wav_uri, video_start, duration)
        encode_aac_track(track.uri, aac_track_uri(track.uri))  # recipients copy it outside their voice windows
        return track

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-audio") as pool:
        # A recording's audio does not depend on its working video (the duration only sizes the
        # silence of one without sound): decoded and encoded beside the video work.
        audio_job = pool.submit(audio_track, source.duration) if source.has_audio else None
        scan = scan_video(base_video_uri)  # refuses a recording without one decodable frame
        damaged = bool(scan.concealed)
        reason = mezzanine_reason(source, base_video_uri)
        if damaged and reason is None:  # its packets cannot be copied: the working video is what FFmpeg decodes
            reason = "damaged video: " + "; ".join(c.line() for c in scan.concealed)
        if reason is None:
            video, working = source, base_video_uri
            missing = _cut_frames_without_idr(source, cut_times)
            if missing:
                log.info("planting IDR keyframes at frames %s of %s", missing, base_video_uri)
                working = storage.join(root, "working.mp4")
                video = plant_keyframes(source, base_video_uri, missing, working)
        else:
            log.info("making an H.264 mezzanine of %s: %s", base_video_uri, reason)
            working = storage.join(root, "working.mp4")
            lost = any(c.kind == "undecodable" for c in scan.concealed)
            video = make_mezzanine(source, base_video_uri, cut_times, working, frames_lost=lost)
        audio = audio_job.result() if audio_job is not None else audio_track(video.duration)
    return PreparedMedia(
        source=source,
        video=video,
        working_video_uri=working,
        mezzanine=reason is not None,
        mezzanine_reason=reason,
        audio_uri=audio.uri,
        audio_sample_rate=audio.sample_rate,
        audio_channels=audio.channels,
        concealed=[*scan.concealed, *audio.concealed],
    )


def _video_start(uri: str) -> float:
    """Presentation time of the first video frame (the audio WAV is aligned to it).

    AVI stores no presentation times: frame i is shown at i / fps from the first packet, and the
    times FFmpeg guesses add the codec's B-frame delay, so there the first packet's time is used.
    """

    with storage.local_path(uri) as path, av.open(str(path)) as container:
        stream = container.streams.video[0]
        if container.format.name == "avi":
            for packet in demux_readable(container, stream):
                if packet.dts is not None:
                    return float(packet.dts * stream.time_base)
            return 0.0
        first = None
        for packet in demux_readable(container, stream):
            if packet.pts is not None and packet.size:
                first = packet.pts if first is None else min(first, packet.pts)
                if packet.dts is not None and first is not None and packet.dts > first + 16 * (packet.duration or 1):
                    break
        return float(first * stream.time_base) if first is not None else 0.0
