"""The H.264 encodes of the engine: one set of x264 settings for the mezzanine and the spliced spans.

A splice mixes packets from two encodes in one MP4 track, so the re-encoded spans must decode
with the kept stream's parameters: same profile, level, pixel format, colour tags and frame
rate, no B-frames (timestamps of a span then need no reordering), closed GOPs, and x264's
``stitchable`` so its headers do not depend on content. The mezzanine uses the same preset and
parameters, so its SPS/PPS equal a span's and the splice needs no extra parameter sets.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from fractions import Fraction

import av

from loom import local_cache
from loom.media import h264
from loom.media.muxing import encoded_packets

PRESET = "veryfast"
MEZZANINE_CRF = 8  # visually lossless: >= 45 dB luma PSNR even on long P-frame runs of busy content
SPAN_CRF = 10  # edited frames: one generation from the working video, >= 40 dB outside the boxes
# Parameters that shape the SPS/PPS or the GOP structure; shared by the mezzanine and the spans.
STITCH_PARAMS = "stitchable=1:bframes=0:scenecut=0:open-gop=0"

_PROFILES = {
    "baseline": "baseline",
    "constrained baseline": "baseline",
    "main": "main",
    "high": "high",
    "high 10": "high10",
    "high 4:2:2": "high422",
    "high 4:4:4 predictive": "high444",
}


def x264_profile(profile: str | None) -> str | None:
    """libx264's name for a probed H.264 profile, or None if it cannot make that profile."""
    if not profile:
        return None
    return _PROFILES.get(profile.strip().lower())


def x264_level(level: int | None) -> str | None:
    """Probed ``level_idc`` (e.g. 31) as libx264's level string ("3.1")."""
    if not level or level <= 0:
        return None
    return f"{level // 10}.{level % 10}"


class SpanEncoder:
    """Encodes runs of frames as closed GOPs (IDR first, P-frames after) that fit a kept H.264 track.

    Packets come out length-prefixed (``length_size`` bytes) for MP4. The encoder writes its
    SPS/PPS under ``param_set_id``; ``headers`` holds them. With ``keep_headers`` False the in-band
    parameter sets are dropped (use when they equal the track's own avcC record).
    """

    def __init__(
        self,
        width: int,
        height: int,
        pix_fmt: str,
        fps: Fraction,
        profile: str | None,
        level: int | None,
        colour: dict[str, int],
        length_size: int = 4,
        param_set_id: int = 0,
        crf: int = SPAN_CRF,
        sample_aspect: Fraction | None = None,
    ) -> None:
        self.sample_aspect = sample_aspect
        self.width, self.height, self.pix_fmt, self.fps = width, height, pix_fmt, Fraction(fps)
        self.profile, self.level, self.colour = profile, level, colour
        self.length_size = length_size
        self.param_set_id = param_set_id
        self.crf = crf
        self.keep_headers = True
        self.headers: list[bytes] = []

    def _context(self) -> av.CodecContext:
        cc = av.CodecContext.create("libx264", "w")
        cc.width, cc.height, cc.pix_fmt = self.width, self.height, self.pix_fmt
        cc.time_base = 1 / self.fps
        cc.framerate = self.fps
        if self.sample_aspect:
            cc.sample_aspect_ratio = self.sample_aspect
        for name, value in self.colour.items():
            if value is not None:
                setattr(cc, name, value)
        cc.options = self._options()
        return cc

    def _options(self) -> dict[str, str]:
        options = {
            "preset": PRESET,
            "crf": str(self.crf),
            "forced-idr": "1",
            "x264-params": f"{STITCH_PARAMS}:{keyint_params(self.fps)}:sps-id={self.param_set_id}",
        }
        profile, level = x264_profile(self.profile), x264_level(self.level)
        if profile:
            options["profile"] = profile
        if level:
            options["level"] = level
        return options

    def probe_headers(self) -> list[bytes]:
        """The SPS and PPS this encoder writes (encodes one grey frame). Kept in the local cache
        under everything that shapes them (settings, x264 parameters, the FFmpeg build)."""

        identity = json.dumps([av.__version__, av.library_versions.get("libavcodec"), self._options(),
                               self.width, self.height, self.pix_fmt, str(self.fps), str(self.sample_aspect),
                               sorted(self.colour.items())])
        kept = local_cache.read_json("x264", identity, "headers.json")
        try:
            return [bytes.fromhex(h) for h in kept]  # type: ignore[union-attr]
        except (TypeError, ValueError):
            pass  # none kept, or not a list of hex strings
        headers = self._encode_headers()
        local_cache.write_json("x264", identity, "headers.json", [h.hex() for h in headers])
        return headers

    def _encode_headers(self) -> list[bytes]:
        cc = self._context()
        frame = av.VideoFrame(self.width, self.height, self.pix_fmt)
        for plane in frame.planes:
            plane.update(bytes([128]) * plane.buffer_size)
        frame.pts = 0
        packets = list(encoded_packets(cc, [frame]))
        nals = h264.split_annexb(bytes(packets[0]))
        return [n for n in nals if h264.nal_type(n) in (h264.NAL_SPS, h264.NAL_PPS)]

    def encode(self, frames: Iterable[av.VideoFrame], idr_at: Iterable[int] = ()) -> Iterator[tuple[bytes, bool]]:
        """Closed GOPs: yields ``(length-prefixed payload, is IDR)`` in decode (= display) order.

        The first frame and the frames at the positions in ``idr_at`` (counted from 0) are IDR pictures.
        """
        cc = self._context()
        forced = set(idr_at) | {0}

        def timed() -> Iterator[av.VideoFrame]:
            for count, frame in enumerate(frames):
                if frame.format.name != self.pix_fmt:
                    frame = frame.reformat(format=self.pix_fmt)
                frame.pts = count
                frame.time_base = cc.time_base
                frame.pict_type = av.video.frame.PictureType.I if count in forced else av.video.frame.PictureType.NONE
                yield frame

        for packet in encoded_packets(cc, timed()):
            yield self._to_mp4(bytes(packet)), packet.is_keyframe

    def _to_mp4(self, annexb: bytes) -> bytes:
        nals = h264.split_annexb(annexb)
        params = [n for n in nals if h264.nal_type(n) in (h264.NAL_SPS, h264.NAL_PPS)]
        if params and not self.headers:
            self.headers = params
        if not self.keep_headers:
            nals = [n for n in nals if h264.nal_type(n) not in (h264.NAL_SPS, h264.NAL_PPS)]
        return h264.join_length_prefixed(nals, self.length_size)


def keyint_params(fps: Fraction, keyframe_seconds: float = 2.0) -> str:
    """Keyframe interval of the mezzanine (and of spans, whose SPS depends on it)."""
    return f"keyint={max(1, round(float(fps) * keyframe_seconds))}:min-keyint=1"


def mezzanine_x264_args(fps: Fraction) -> list[str]:
    """ffmpeg arguments for the mezzanine's video encode (the spans use the same preset and params)."""
    return [
        "-c:v", "libx264", "-preset", PRESET, "-crf", str(MEZZANINE_CRF), "-pix_fmt", "yuv420p",
        "-x264-params", f"{STITCH_PARAMS}:{keyint_params(fps)}",
        "-forced-idr", "1",
    ]
