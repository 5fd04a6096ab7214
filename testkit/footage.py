"""Real-world recordings made on the fly from real film footage, in the shapes people upload.

The footage is OpenCV's sample clip ``Megamind.avi`` (a film excerpt: MPEG-4 Part 2 + AC3 in AVI,
720x528, 23.976 fps, scene cuts at frames 98, 154 and 200; two people in the first shot), shipped by
Debian's ``opencv-doc`` (installed by ``setup.sh``). Each shape is cut from it with the ffmpeg binary
that imageio-ffmpeg ships, kept short and small so a test stays fast.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import av
import imageio_ffmpeg

FOOTAGE = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")
CUTS = (98, 154, 200)  # first frames of the footage's second, third and fourth shots
FOOTAGE_FPS = 24000 / 1001


def footage() -> Path:
    if not FOOTAGE.is_file():
        raise FileNotFoundError(f"{FOOTAGE} is missing: run setup.sh as root (apt-get install opencv-doc)")
    return FOOTAGE


def ffmpeg(*args: str) -> None:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-v", "error", *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {result.stderr.strip()[-800:]}")


def _excerpt(start: float, seconds: float, width: int) -> list[str]:
    """Input arguments for ``seconds`` of the footage from ``start``, scaled to ``width`` (even height)."""
    return ["-ss", f"{start}", "-t", f"{seconds}", "-i", str(footage()), "-vf", f"scale={width}:-2"]


def excerpt_mp4(out: Path, start: float, seconds: float, width: int = 360) -> Path:
    """A plain H.264 + AAC MP4 of the footage from ``start`` (frame ``round(start * 23.976)``)."""
    ffmpeg(*_excerpt(start, seconds, width), "-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-c:a", "aac", str(out))
    return out


def phone_hevc_mov(out: Path, start: float = 0.5, seconds: float = 1.6, width: int = 240) -> Path:
    """HEVC in MOV, shown rotated by 90 degrees (display matrix), mono AAC at 44.1 kHz (a phone's)."""
    plain = out.with_name(out.stem + "-unrotated.mov")
    ffmpeg(*_excerpt(start, seconds, width), "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
           "-tag:v", "hvc1", "-c:a", "aac", "-ac", "1", "-ar", "44100", str(plain))
    ffmpeg("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(out))
    plain.unlink()
    return out


def vp9_opus_webm(out: Path, start: float = 0.5, seconds: float = 1.6, width: int = 240) -> Path:
    ffmpeg(*_excerpt(start, seconds, width), "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
           "-crf", "32", "-b:v", "0", "-c:a", "libopus", "-b:a", "64k", str(out))
    return out


def vfr_h264(out: Path, start: float = 0.5, seconds: float = 1.6, width: int = 240) -> Path:
    """H.264 MP4 with a variable frame rate: every third frame dropped, the others keep their times."""
    ffmpeg("-ss", f"{start}", "-t", f"{seconds}", "-i", str(footage()),
           "-vf", f"scale={width}:-2,select='not(eq(mod(n\\,3)\\,2))'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(out))
    return out


def h264_1080p60_open_gop(out: Path, start: float = 0.5, seconds: float = 1.2) -> Path:
    """1080p60 H.264 with B-frames and an open GOP (non-IDR keyframes), as cameras and OBS write."""
    ffmpeg("-ss", f"{start}", "-t", f"{seconds}", "-i", str(footage()),
           "-vf", "scale=1920:1080,fps=60", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "28",
           "-x264-params", "open-gop=1:bframes=3:keyint=24:min-keyint=24:scenecut=0", "-c:a", "aac", str(out))
    return out


def hevc_10bit_hlg(out: Path, start: float = 0.5, seconds: float = 1.6, width: int = 240) -> Path:
    """10-bit HEVC tagged HLG (BT.2020 primaries and matrix, ARIB STD-B67 transfer)."""
    ffmpeg(*_excerpt(start, seconds, width), "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
           "-x265-params", "log-level=error:colorprim=bt2020:transfer=arib-std-b67:colormatrix=bt2020nc",
           "-color_primaries", "bt2020", "-color_trc", "arib-std-b67", "-colorspace", "bt2020nc",
           "-tag:v", "hvc1", "-c:a", "aac", str(out))
    return out


def prores_pcm_mov(out: Path, start: float = 0.5, seconds: float = 1.6, width: int = 240) -> Path:
    ffmpeg(*_excerpt(start, seconds, width), "-c:v", "prores_ks", "-profile:v", "0", "-c:a", "pcm_s16le", str(out))
    return out


def mpegts_late_start(out: Path, start: float = 0.5, seconds: float = 1.6, width: int = 240, offset: float = 10.0) -> Path:
    """MPEG-TS whose first frame is shown at ``offset`` seconds (plus the muxer's own delay)."""
    ffmpeg(*_excerpt(start, seconds, width), "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac",
           "-output_ts_offset", f"{offset}", "-f", "mpegts", str(out))
    return out


def truncated_mp4(out: Path, start: float = 0.5, seconds: float = 1.6, width: int = 240, keep: float = 0.85) -> Path:
    """An interrupted upload: an H.264 MP4 (index first) missing the last ``1 - keep`` of its bytes."""
    whole = out.with_name(out.stem + "-whole.mp4")
    ffmpeg(*_excerpt(start, seconds, width), "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac",
           "-movflags", "+faststart", str(whole))
    data = whole.read_bytes()
    out.write_bytes(data[: int(len(data) * keep)])
    whole.unlink()
    return out


def no_audio_mp4(out: Path, start: float = 0.5, seconds: float = 1.6, width: int = 240) -> Path:
    ffmpeg(*_excerpt(start, seconds, width), "-an", "-c:v", "libx264", "-preset", "veryfast", str(out))
    return out


def mpeg4_ac3_avi_damaged(out: Path, start: float = 0.5, seconds: float = 1.6, width: int = 240) -> Path:
    """MPEG-4 Part 2 + AC3 in AVI (the footage's own codecs) whose last audio frame is incomplete: the
    file ends a third into it (the muxer writes it last, after the last video frame), index lost."""
    whole = out.with_name(out.stem + "-whole.avi")
    ffmpeg(*_excerpt(start, seconds, width), "-c:v", "mpeg4", "-q:v", "3", "-c:a", "ac3", "-b:a", "96k", str(whole))
    with av.open(str(whole)) as src:
        packets = [(p.stream.type, p.pos, p.size) for p in src.demux() if p.size and p.pos is not None]
    kind, pos, size = max(packets, key=lambda p: p[1])
    assert kind == "audio", "the file does not end with an audio frame"
    out.write_bytes(whole.read_bytes()[: pos + size // 3])
    whole.unlink()
    return out


def h264_lost_packet(out: Path, start: float = 0.5, seconds: float = 1.6, width: int = 240) -> Path:
    """An H.264 MP4 with one P-frame packet in the middle zeroed (a bit error the decoder refuses)."""
    ffmpeg(*_excerpt(start, seconds, width), "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(out))
    with av.open(str(out)) as src:
        packets = [(p.pos, p.size) for p in src.demux(src.streams.video[0]) if p.size and not p.is_keyframe]
    pos, size = packets[len(packets) // 2]
    data = bytearray(out.read_bytes())
    data[pos : pos + size] = bytes(size)
    out.write_bytes(bytes(data))
    return out


SHAPES: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "phone-hevc-mov-rotated": (".mov", phone_hevc_mov),
    "vp9-opus-webm": (".webm", vp9_opus_webm),
    "vfr-h264": (".mp4", vfr_h264),
    "1080p60-h264-open-gop": (".mp4", h264_1080p60_open_gop),
    "hevc-10bit-hlg": (".mov", hevc_10bit_hlg),
    "prores-pcm": (".mov", prores_pcm_mov),
    "mpegts-late-start": (".ts", mpegts_late_start),
    "truncated-mp4": (".mp4", truncated_mp4),
    "no-audio": (".mp4", no_audio_mp4),
    "mpeg4-ac3-avi-damaged-audio": (".avi", mpeg4_ac3_avi_damaged),
    "h264-lost-packet": (".mp4", h264_lost_packet),
}


def make_shape(name: str, folder: Path) -> Path:
    suffix, make = SHAPES[name]
    folder.mkdir(parents=True, exist_ok=True)
    return make(folder / f"{name}{suffix}")
