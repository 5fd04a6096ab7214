"""Lip-sync a voice window (or a whole clip) with a local Wav2Lip checkpoint.

The model is loaded once per process and checkpoint; without a checkpoint, lip-sync is skipped
with one warning per process and the caller keeps the new voice over the original mouth, so an
untrained model never reaches an output. Only frames of the window that show a face are run,
in batches, under ``torch.inference_mode()``, in half precision on CUDA.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch
from pydantic import BaseModel, Field

from loom import storage
from loom.allocator import keep_freed_memory
from loom.edits import AudioInsert, PatchSetRef
from loom.errors import InputError
from loom.lipsync.audio import (
    SAMPLE_RATE,
    load_speech,
    mel_start,
    mel_windows,
    melspectrogram,
)
from loom.lipsync.blend import blend_mouth
from loom.lipsync.checkpoint import load_wav2lip, short_digest
from loom.lipsync.clips import FramePatch, Patcher, encode_clip, load_output_audio
from loom.lipsync.faces import FaceBox, FaceTrack, detect_faces, load_face_track
from loom.lipsync.model import FACE_SIZE, Wav2Lip
from loom.lipsync.notice import forget_warning, warn_no_checkpoint
from loom.media.frames import prefetched, read_frames
from loom.media.patches import Patch, PatchSet
from loom.media.probe import probe_video
from loom.prepared import PreparedTemplate
from loom.settings import get_settings
from loom.template import VoiceSegment

log = logging.getLogger("loom.lipsync")

_lock = threading.Lock()
_models: dict[tuple[str, str], Wav2Lip] = {}
_digests: dict[str, str] = {}


# ------------------------------------------------------------------ model, once per process


def resolve_device(preference: str = "auto") -> torch.device:
    """``cuda`` when asked for (or ``auto``) and present, else the CPU."""
    preference = (preference or "auto").lower()
    if preference.startswith("cuda") or preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda" if preference == "auto" else preference)
        if preference != "auto":
            log.warning("lip-sync: %s asked for but no CUDA device is available; running on the CPU", preference)
    return torch.device("cpu")


@dataclass
class LipSyncModel:
    """A loaded generator and how to run it."""

    model: Wav2Lip
    device: torch.device
    dtype: torch.dtype
    checkpoint: str

    @torch.inference_mode()
    def generate(self, mels: np.ndarray, faces_bgr: np.ndarray) -> np.ndarray:
        """``(B, 80, 16)`` mel windows and ``(B, 96, 96, 3)`` uint8 BGR crops -> ``(B, 96, 96, 3)`` uint8 BGR."""
        masked = faces_bgr.copy()
        masked[:, FACE_SIZE // 2 :] = 0  # the model sees the upper half only, plus the full reference
        stacked = torch.from_numpy(np.concatenate([masked, faces_bgr], axis=3)).to(self.device, non_blocking=True)
        faces = stacked.permute(0, 3, 1, 2).to(self.dtype).div_(255.0)
        mel = torch.from_numpy(np.ascontiguousarray(mels, dtype=np.float32)).to(self.device).unsqueeze(1).to(self.dtype)
        out = self.model(mel, faces)
        return out.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def load_model(checkpoint: str, device: str = "auto") -> LipSyncModel:
    """The generator for ``checkpoint`` on ``device``, loaded once per process and reused."""
    dev = resolve_device(device)
    key = (checkpoint, str(dev))
    with _lock:
        model = _models.get(key)
        if model is None:
            started = time.perf_counter()
            sha256: dict[str, str] = {}
            model = load_wav2lip(checkpoint, dev, half=dev.type == "cuda", digest=sha256)
            _models[key] = model
            _digests.setdefault(checkpoint, sha256[checkpoint][:16])
            log.info("lip-sync: loaded %s on %s in %.1f s", checkpoint, dev, time.perf_counter() - started)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    return LipSyncModel(model=model, device=dev, dtype=dtype, checkpoint=checkpoint)


def checkpoint_digest() -> str | None:
    """SHA-256 prefix of the configured checkpoint (hashed once per process), or None."""
    uri = get_settings().wav2lip_checkpoint
    if not uri:
        return None
    with _lock:
        if uri not in _digests:
            _digests[uri] = short_digest(uri) if storage.exists(uri) else "missing"
        return _digests[uri]


def reset_engine() -> None:
    """Forget loaded models, digests and the no-checkpoint warning (settings changed)."""
    with _lock:
        _models.clear()
        _digests.clear()
    forget_warning()


# ------------------------------------------------------------------ frames in, patches out

# Blending is OpenCV/numpy work that releases the GIL: a few threads keep up with a GPU.
_blend_pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="lipsync-blend")


def crop_face(frame_rgb: np.ndarray, box: FaceBox) -> np.ndarray:
    """The box resized to 96x96 in BGR, the colour order the model was trained on."""
    crop = frame_rgb[box.y1 : box.y2, box.x1 : box.x2]
    return cv2.cvtColor(cv2.resize(crop, (FACE_SIZE, FACE_SIZE)), cv2.COLOR_RGB2BGR)


def lipsync_frames(
    engine: LipSyncModel,
    frames: Iterable[tuple[int, np.ndarray]],
    boxes: Callable[[int], FaceBox | None],
    mel: np.ndarray,
    mel_index: Callable[[int], int],
    batch_size: int,
    colour_match: bool = True,
    sharpen_amount: float = 0.4,
) -> Iterator[FramePatch]:
    """Yield every frame in order with its mouth patch (None where no face is boxed)."""
    pending: list[tuple[int, np.ndarray, FaceBox | None]] = []
    faces = 0

    def flush() -> Iterator[FramePatch]:
        nonlocal faces
        todo = [(k, i, f, b) for k, (i, f, b) in enumerate(pending) if b is not None]
        patches: dict[int, Patch | None] = {}
        if todo:
            crops = np.stack([crop_face(f, b) for _, _, f, b in todo])
            mels = mel_windows(mel, [mel_index(i) for _, i, _, _ in todo])
            generated = engine.generate(mels, crops)

            def blend(job: tuple[tuple[int, int, np.ndarray, FaceBox], np.ndarray]) -> Patch | None:
                (_k, _i, f, b), out = job
                return blend_mouth(f, b, cv2.cvtColor(out, cv2.COLOR_BGR2RGB), colour_match, sharpen_amount)

            for (k, *_), patch in zip(todo, _blend_pool.map(blend, zip(todo, generated))):
                patches[k] = patch
        for k, (i, f, _b) in enumerate(pending):
            yield FramePatch(index=i, frame=f, patch=patches.get(k))
        pending.clear()
        faces = 0

    for index, frame in frames:
        box = boxes(index)
        pending.append((index, frame, box))
        faces += box is not None
        if faces >= batch_size or len(pending) >= 4 * batch_size:
            yield from flush()
    if pending:
        yield from flush()


def _window_mel_index(fps: Fraction, audio_start: float) -> Callable[[int], int]:
    """Frame i is shown at i / fps; its 16-frame mel window starts at int((t - audio start) * 80)."""
    return lambda i: mel_start(float(Fraction(i) / fps) - audio_start)


# ------------------------------------------------------------------ the steps


def lipsync_segment(prepared: PreparedTemplate, segment: VoiceSegment, insert: AudioInsert, out_uri: str) -> PatchSetRef | None:
    """Mouth patches for the window's frames that show a face, written as a patch set to ``out_uri``.

    Returns None (after one warning per process) when no checkpoint is configured.
    """
    settings = get_settings()
    if not settings.wav2lip_checkpoint:
        warn_no_checkpoint()
        return None
    keep_freed_memory()
    started = time.perf_counter()
    engine = load_model(settings.wav2lip_checkpoint, settings.wav2lip_device)
    first, stop = prepared.segment_frames(segment.start_time, segment.end_time)
    track: FaceTrack | None = load_face_track(prepared.faces[segment.id]) if segment.id in prepared.faces else None
    boxes = (lambda i: track.box(i)) if track is not None else (lambda i: None)
    mel = melspectrogram(load_speech(insert.uri))
    mel_index = _window_mel_index(prepared.video.frame_rate, insert.start)

    # Only frames with a face are decoded for the model; the others need no pixels at all.
    wanted = [i for i in range(first, stop) if boxes(i) is not None]
    patch_set = PatchSet()
    if wanted:
        frames = prefetched(read_frames(prepared.working_video_uri, wanted[0], wanted[-1] + 1), 2 * settings.wav2lip_batch_size)
        for item in lipsync_frames(engine, frames, boxes, mel, mel_index, settings.wav2lip_batch_size):
            if item.patch is not None:
                patch_set.add(item.index, item.patch)
    patch_set.save(out_uri)
    without_face = (stop - first) - len(wanted)
    qa: dict[str, object] = {
        "frames": stop - first,
        "frames_without_face": without_face,
        "detector": track.detector if track is not None else None,
        "device": str(engine.device),
        "dtype": str(engine.dtype).removeprefix("torch."),
        "batch_size": settings.wav2lip_batch_size,
        "checkpoint": checkpoint_digest(),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return PatchSetRef(
        segment_id=segment.id,
        kind="lipsync",
        uri=out_uri,
        first_frame=first,
        stop_frame=stop,
        frames_patched=len(patch_set),
        qa=qa,
    )


class LipSyncClipReport(BaseModel):
    output_uri: str
    frames: int
    frames_patched: int
    frames_without_face: int
    device: str
    seconds: float
    warnings: list[str] = Field(default_factory=list)


def lipsync_clip(video_uri: str, audio_uri: str, out_uri: str, checkpoint: str | None = None) -> str:
    """``loom lipsync``: lip-sync one clip to an audio file; returns the output's location."""
    report = lipsync_clip_report(video_uri, audio_uri, out_uri, checkpoint)
    for warning in report.warnings:
        log.warning(warning)
    log.info(
        "lip-sync: %d of %d frames patched (%d without a face) on %s in %.1f s",
        report.frames_patched, report.frames, report.frames_without_face, report.device, report.seconds,
    )
    return report.output_uri


def lipsync_clip_report(video_uri: str, audio_uri: str, out_uri: str, checkpoint: str | None = None) -> LipSyncClipReport:
    """Lip-sync a whole clip to an audio file: faces, model, blend, one encode with that audio.

    The output keeps the video's frames and timing; the audio is cut or padded with silence to
    the video's length.
    """
    started = time.perf_counter()
    settings = get_settings()
    checkpoint = checkpoint or settings.wav2lip_checkpoint
    if not checkpoint:
        raise InputError("checkpoint", "no Wav2Lip checkpoint given", "pass --checkpoint or set LOOM_WAV2LIP_CHECKPOINT")
    engine = load_model(checkpoint, settings.wav2lip_device)
    info = probe_video(video_uri)
    speech = load_speech(audio_uri)
    warnings: list[str] = []
    if abs(len(speech) / SAMPLE_RATE - info.duration) > 0.5:
        warnings.append(
            f"audio lasts {len(speech) / SAMPLE_RATE:.2f} s, video {info.duration:.2f} s: the audio is cut or padded"
        )
    n_speech = int(round(info.duration * SAMPLE_RATE))
    mel = melspectrogram(np.pad(speech, (0, max(0, n_speech - len(speech))))[:n_speech])
    with storage.staged_output(out_uri) as staged:
        track_uri = str(Path(staged).with_suffix(".faces.json"))
        track = detect_faces(video_uri, info, 0, info.frame_count, track_uri)
        Path(track_uri).unlink(missing_ok=True)
        warnings += track.warnings
        sound = load_output_audio(audio_uri, info.duration)
        patched = encode_clip(video_uri, staged, _model_patcher(engine, track, mel, settings.wav2lip_batch_size), sound)
    return LipSyncClipReport(
        output_uri=out_uri,
        frames=info.frame_count,
        frames_patched=patched,
        frames_without_face=track.frames_without_face,
        device=str(engine.device),
        seconds=round(time.perf_counter() - started, 3),
        warnings=warnings,
    )


def _model_patcher(engine: LipSyncModel, track: FaceTrack, mel: np.ndarray, batch: int) -> Patcher:
    """Frames in, the model's mouth patches out, each frame's mel window at its real timestamp."""

    def patcher(frames: Iterator[tuple[int, np.ndarray]], time_of: Callable[[int], float]) -> Iterator[FramePatch]:
        return lipsync_frames(engine, frames, track.box, mel, lambda i: mel_start(time_of(i)), batch)

    return patcher
