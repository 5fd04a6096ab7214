"""What every lip-sync backend shares, without torch: cutting a window into a clip a backend can
read, taking a returned clip's lower face back as patches (the same feathered mask as Wav2Lip's,
never a pixel outside a face box or outside the window), and writing a whole lip-synced clip.

A backend that only follows the plugin contract (``sync(video_path, audio_path, output_path)``)
is run through ``clip_backend_segment`` and ``confined_clip``: whatever it does to the frames,
only the lower faces of the window's frames reach a recipient's video.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from loom import plugins, storage
from loom.edits import AudioInsert, PatchSetRef
from loom.lipsync.blend import blend_mouth
from loom.lipsync.faces import FaceTrack, detect_faces, load_face_track
from loom.media.audio_mix import Mixer, open_pcm
from loom.media.frames import read_frames
from loom.media.muxing import mux_frames, planar_frames
from loom.media.patches import Patch, PatchSet, apply_patches
from loom.media.probe import probe_video
from loom.prepared import PreparedTemplate
from loom.settings import get_settings
from loom.template import VoiceSegment
from loom.voice.wav import write_wav

log = logging.getLogger("loom.lipsync")

HANDLE_SECONDS = 0.2  # context a backend sees on each side of the window; those frames are never used
OUTPUT_RATE = 48000
# Codecs per output container (H.264 + AAC unless the container cannot hold them).
_VIDEO_CODEC = {".webm": ("libvpx-vp9", {"crf": "24", "b": "0", "deadline": "good", "cpu-used": "4"})}
_H264 = ("libx264", {"crf": "17", "preset": "medium"})
_AUDIO_CODEC = {".webm": "libopus", ".ogg": "libopus", ".avi": "mp3"}


@dataclass
class FramePatch:
    index: int
    frame: np.ndarray  # RGB, untouched
    patch: Patch | None


class ClipMismatch(Exception):
    """A backend's clip does not have the frames it was given (count or size): nothing is taken."""


# ------------------------------------------------------------------ clips in and out


def cut_window(video_uri: str, first: int, stop: int, fps: Fraction, target: Path) -> Path:
    """Frames [first, stop) re-encoded as a small, near-lossless H.264 MP4 (what a backend reads)."""
    with av.open(str(target), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.options = {"crf": "12", "preset": "veryfast"}

        def frames() -> Iterator[av.VideoFrame]:
            for n, (_, rgb) in enumerate(read_frames(video_uri, first, stop)):
                if n == 0:
                    stream.width, stream.height = rgb.shape[1], rgb.shape[0]
                    stream.pix_fmt = "yuv420p" if rgb.shape[1] % 2 == 0 and rgb.shape[0] % 2 == 0 else "yuv444p"
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = n
                frame.time_base = 1 / fps
                yield frame

        mux_frames(out, stream, frames())
    return target


def clip_audio(prepared: PreparedTemplate, insert: AudioInsert, first: int, stop: int, target: Path) -> Path:
    """The recording's audio over frames [first, stop) with the new line mixed into its window."""
    fps = prepared.video.frame_rate
    with open_pcm(prepared.audio_uri) as (pcm, rate):
        mixer = Mixer(pcm, rate, [insert])
        lo, hi = round(float(first / fps) * rate), round(float(stop / fps) * rate)
        write_wav(str(target), mixer.read(lo, hi), rate)
    return target


def returned_frames(path: Path, count: int, shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """A backend's output frames, checked against what it was given, in order."""
    with av.open(str(path)) as container:
        n = 0
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            if rgb.shape != shape:
                raise ClipMismatch(f"returned {rgb.shape[1]}x{rgb.shape[0]} frames for {shape[1]}x{shape[0]}")
            n += 1
            if n > count:
                raise ClipMismatch(f"returned more than the {count} frames it was given")
            yield rgb
    if n < count:
        raise ClipMismatch(f"returned {n} of the {count} frames it was given")


def lower_face_patches(
    originals: Iterable[tuple[int, np.ndarray]],
    synced: Iterable[np.ndarray],
    box: Callable[[int], object],
    colour_match: bool = False,
) -> Iterator[FramePatch]:
    """Each original frame with the synced frame's lower face as its patch (None without a face)."""
    for (index, original), frame in zip(originals, synced, strict=True):
        face = box(index)
        patch = None
        if face is not None:
            # only the lower face is taken back, through the same feathered mask as Wav2Lip's
            patch = blend_mouth(original, face, frame[face.y1 : face.y2, face.x1 : face.x2], colour_match, 0.0)  # type: ignore[attr-defined]
        yield FramePatch(index=index, frame=original, patch=patch)


# ------------------------------------------------------------------ a voice window, by the plugin contract


def clip_backend_segment(
    backend: object, name: str, prepared: PreparedTemplate, segment: VoiceSegment, insert: AudioInsert, out_uri: str
) -> PatchSetRef:
    """Mouth patches for the window from a backend that only has ``sync``: it is handed the window
    plus handles as a clip, and only the lower faces of the window's frames are taken back. A clip
    that comes back with other frames is not trusted: no patch, and the QA record says why."""
    started = time.perf_counter()
    first, stop = prepared.segment_frames(segment.start_time, segment.end_time)
    fps = prepared.video.frame_rate
    handle = round(HANDLE_SECONDS * float(fps))
    c0, c1 = max(0, first - handle), min(prepared.video.frame_count, stop + handle)
    track: FaceTrack | None = load_face_track(prepared.faces[segment.id]) if segment.id in prepared.faces else None
    patches = PatchSet()
    qa: dict[str, object] = {"backend": name, "frames": stop - first, "handles": [first - c0, c1 - stop]}
    with tempfile.TemporaryDirectory(prefix="loom-lipsync-") as tmp:
        video = cut_window(prepared.working_video_uri, c0, c1, fps, Path(tmp) / "clip.mp4")
        audio = clip_audio(prepared, insert, c0, c1, Path(tmp) / "clip.wav")
        result = Path(tmp) / "synced.mp4"
        backend.sync(str(video), str(audio), str(result), fps=float(fps), window=(first - c0, stop - c0))  # type: ignore[attr-defined]
        shape = (prepared.video.height, prepared.video.width, 3)
        try:
            synced = returned_frames(result, c1 - c0, shape)
            originals = read_frames(prepared.working_video_uri, c0, c1)
            box = (lambda i: track.box(i) if first <= i < stop else None) if track is not None else (lambda i: None)
            for item in lower_face_patches(originals, synced, box):
                if item.patch is not None:
                    patches.add(item.index, item.patch)
        except (ClipMismatch, ValueError, av.error.FFmpegError, OSError) as exc:
            patches = PatchSet()  # unsure means untouched
            message = f"lip-sync backend {name} for {segment.id}: {exc}; the original mouth is kept"
            log.warning(message)
            qa["warnings"] = [message]
            qa["flagged"] = True
    patches.save(out_uri)
    with_face = sum(1 for i in range(first, stop) if track is not None and track.box(i) is not None)
    qa |= {"frames_without_face": (stop - first) - with_face, "seconds": round(time.perf_counter() - started, 3)}
    return PatchSetRef(
        segment_id=segment.id, kind="lipsync", uri=out_uri, first_frame=first, stop_frame=stop,
        frames_patched=len(patches), qa=qa,
    )


# ------------------------------------------------------------------ a whole clip (``loom lipsync``)


def load_output_audio(uri: str, seconds: float) -> np.ndarray:
    """The audio to mux, float32 ``(channels, samples)`` at 48 kHz (mono or stereo), cut or
    padded with silence to ``seconds``. Kept apart from the model's 16 kHz copy so the output
    keeps the recording's full bandwidth."""
    with storage.local_path(uri) as path, av.open(str(path)) as container:
        stream = container.streams.audio[0]
        layout = "mono" if stream.codec_context.channels == 1 else "stereo"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=OUTPUT_RATE)
        parts = [f.to_ndarray() for frame in container.decode(stream) for f in resampler.resample(frame)]
        parts += [f.to_ndarray() for f in resampler.resample(None)]
    channels = 1 if layout == "mono" else 2
    samples = np.concatenate(parts, axis=1) if parts else np.zeros((channels, 0), np.float32)
    n = int(round(seconds * OUTPUT_RATE))
    return np.ascontiguousarray(np.pad(samples, ((0, 0), (0, max(0, n - samples.shape[1]))))[:, :n], dtype=np.float32)


Patcher = Callable[[Iterator[tuple[int, np.ndarray]], Callable[[int], float]], Iterator[FramePatch]]


def encode_clip(video_uri: str, target: Path, patcher: Patcher, sound: np.ndarray) -> int:
    """Decode every frame in order, composite the patch ``patcher`` gives it, encode it with the
    sound; returns the frames patched. ``patcher`` gets the decoded frames and each frame's time."""
    patched = 0
    with storage.local_path(video_uri) as src_path, av.open(str(src_path)) as src, av.open(str(target), "w") as out:
        vin = src.streams.video[0]
        vin.thread_type = "AUTO"
        rate = Fraction(vin.average_rate or vin.guessed_rate or 25)
        w, h = vin.codec_context.width, vin.codec_context.height
        codec, options = _VIDEO_CODEC.get(target.suffix.lower(), _H264)
        vout = out.add_stream(codec, rate=rate)
        vout.width, vout.height = w, h
        vout.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
        vout.options = dict(options)
        vout.codec_context.time_base = vin.time_base
        aout = out.add_stream(_AUDIO_CODEC.get(target.suffix.lower(), "aac"), rate=OUTPUT_RATE)
        aout.layout = "mono" if sound.shape[0] == 1 else "stereo"
        start_pts = vin.start_time or 0
        times: dict[int, float] = {}

        def decoded() -> Iterator[tuple[int, np.ndarray]]:
            for i, frame in enumerate(src.decode(vin)):
                times[i] = float((frame.pts - start_pts) * vin.time_base) if frame.pts is not None else i / float(rate)
                yield i, frame.to_ndarray(format="rgb24")

        def composited() -> Iterator[av.VideoFrame]:
            nonlocal patched
            for item in patcher(decoded(), lambda i: times.get(i, i / float(rate))):  # real timestamps (VFR safe)
                frame = item.frame
                if item.patch is not None:
                    frame = apply_patches(frame.copy(), [item.patch])
                    patched += 1
                out_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
                out_frame.pts = int(round(times[item.index] / vin.time_base))  # the source's own timing
                out_frame.time_base = vin.time_base
                yield out_frame

        mux_frames(out, vout, composited())
        encode_sound(out, aout, sound)
    return patched


def encode_sound(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, sound: np.ndarray) -> None:
    layout = stream.layout.name
    resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=OUTPUT_RATE)
    mux_frames(out, stream, planar_frames(sound, OUTPUT_RATE, layout, 4096, resampler))


def confined_clip(backend: object, name: str, video_uri: str, audio_uri: str, out_uri: str) -> dict[str, object]:
    """``loom lipsync`` with a backend that only has ``sync``: it syncs the whole clip, and the
    output takes back only the lower faces found in the clip; every other pixel is the input's."""
    started = time.perf_counter()
    info = probe_video(video_uri)
    with storage.staged_output(out_uri) as staged, tempfile.TemporaryDirectory(prefix="loom-lipsync-") as tmp:
        track = detect_faces(video_uri, info, 0, info.frame_count, str(Path(tmp) / "faces.json"))
        with storage.local_path(video_uri) as video, storage.local_path(audio_uri) as audio:
            result = Path(tmp) / f"synced{Path(staged).suffix or '.mp4'}"
            backend.sync(str(video), str(audio), str(result), fps=float(info.frame_rate))  # type: ignore[attr-defined]
        sound = load_output_audio(audio_uri, info.duration)

        def patcher(frames: Iterator[tuple[int, np.ndarray]], _time: Callable[[int], float]) -> Iterator[FramePatch]:
            shape = (info.height, info.width, 3)
            return lower_face_patches(frames, returned_frames(result, info.frame_count, shape), track.box)

        try:
            patched = encode_clip(video_uri, Path(staged), patcher, sound)
        except ClipMismatch as exc:
            raise RuntimeError(f"lip-sync backend {name}: {exc}") from None
    return {
        "output_uri": out_uri, "backend": name, "frames": info.frame_count, "frames_patched": patched,
        "frames_without_face": track.frames_without_face, "seconds": round(time.perf_counter() - started, 3),
        "warnings": track.warnings,
    }


def lipsync_whole_clip(video_uri: str, audio_uri: str, out_uri: str, checkpoint: str | None = None) -> dict[str, object]:
    """``loom lipsync``: the configured backend on a whole clip. A backend whose ``sync`` confines
    itself (the built-in Wav2Lip) writes the output; any other is confined here."""

    name = get_settings().lipsync_backend
    backend = plugins.lipsync_backend(name)
    if getattr(backend, "confined", False):
        backend.sync(video_uri, audio_uri, out_uri, checkpoint=checkpoint)
        return {"output_uri": out_uri, "backend": name}
    return confined_clip(backend, name, video_uri, audio_uri, out_uri)
