"""What preparing a template costs (once per template version), against its floor.

    .venv/bin/python benchmarks/bench_prepare.py [--repeat N] [--keep DIR]

Makes its own input from real film footage (OpenCV's Megamind.avi from Debian's opencv-doc, played
twice over): a 12 s 1280x720 H.264 + AAC MP4 at 23.976 fps (a keyframe every 2 s, as cameras and
screen recorders write) with faces, camera moves and scene
cuts, and a template with one voice line (lip-synced: faces are prepared), one text box and one
image box. Times ``prepare_template`` in a fresh LOOM_HOME (best of N), split into its steps:

- media: probe, the decode scan for damage, keyframes planted at the cuts, audio to WAV and AAC
- tracking and clean plates of the two boxes
- faces of the voice window (also per frame, against detecting on every frame at 640 px as before)

The floor is decoding every frame of the recording once (PyAV, threaded) plus its audio: what any
prepare that looks at every frame must pay. Prints the load average before and after.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402

from testkit.footage import ffmpeg, footage  # noqa: E402

SECONDS = 12.0


def make_recording(path: Path) -> Path:
    ffmpeg("-stream_loop", "1", "-i", str(footage()), "-t", f"{SECONDS}", "-vf", "scale=1280:720",
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-g", "48", "-c:a", "aac", str(path))
    return path


def template_for(video: Path) -> dict:
    return {
        "id": "bench-prepare",
        "base_video_path": str(video),
        "voice_segments": [{"id": "hello", "start_time": 1.0, "end_time": 4.0, "template_text": "Hi {name}!"}],
        "visual_segments": [
            {"id": "name", "segment_type": "text", "start_time": 0.5, "end_time": 3.5, "placeholder_key": "company",
             "x": 0.05, "y": 0.05, "width": 0.3, "height": 0.1},
            {"id": "logo", "segment_type": "image", "start_time": 5.0, "end_time": 9.0, "placeholder_key": "logo",
             "x": 0.72, "y": 0.04, "width": 0.2, "height": 0.15},
        ],
    }


def floor_seconds(video: Path) -> tuple[float, float]:
    """Wall and CPU seconds of decoding every frame and the audio once."""
    started, cpu = time.perf_counter(), cpu_seconds()
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            pass
    with av.open(str(video)) as container:
        for _ in container.decode(audio=0):
            pass
    return time.perf_counter() - started, cpu_seconds() - cpu


def faces_now_seconds(video: Path, first: int, stop: int, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds (all threads) of ``detect_faces`` over frames [first, stop)."""
    from loom.lipsync.faces import detect_faces
    from loom.media.probe import probe_video

    info = probe_video(str(video))
    started, cpu = time.perf_counter(), cpu_seconds()
    detect_faces(str(video), info, first, stop, str(out))
    return time.perf_counter() - started, cpu_seconds() - cpu


def faces_every_frame_seconds(video: Path, first: int, stop: int) -> tuple[float, float]:
    """The baseline for faces: what preparing them cost before (the Haar cascade on every frame at
    640 px, scale step 1.1, faces from 6% of the frame). Wall and CPU seconds."""
    import cv2

    from loom.lipsync.faces import HaarFaceDetector
    from loom.media.frames import read_frames

    cascade = HaarFaceDetector()._cascades[0]
    started, cpu = time.perf_counter(), cpu_seconds()
    for _, bgr in read_frames(str(video), first, stop, fmt="bgr24"):
        scale = 640 / max(bgr.shape[:2])
        gray = cv2.equalizeHist(cv2.cvtColor(cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA),
                                             cv2.COLOR_BGR2GRAY))
        side = max(24, int(min(gray.shape) * 0.06))
        cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    return time.perf_counter() - started, cpu_seconds() - cpu


class Timers:
    """Wall seconds spent in named engine functions (patched on their modules while preparing)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, module: object, name: str, label: str) -> None:
        real: Callable = getattr(module, name)

        @functools.wraps(real)
        def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            started = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - started

        setattr(module, name, timed)


def cpu_seconds() -> float:
    """CPU time of this process's threads and of the processes it waited for (ffmpeg)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def prepare_once(video: Path, home: Path) -> tuple[float, float, Timers]:
    os.environ["LOOM_HOME"] = str(home)
    from loom import pipeline
    from loom.lipsync import faces
    from loom.media import prepare
    from loom.settings import reload_settings
    from loom.template import parse_template
    from loom.visual import plates, tracking

    reload_settings()
    timers = Timers()
    timers.wrap(prepare, "prepare_media", "media")
    timers.wrap(tracking, "track_segment", "tracking")
    timers.wrap(plates, "make_clean_plate", "plates")
    timers.wrap(faces, "detect_faces", "faces")
    try:
        started, cpu = time.perf_counter(), cpu_seconds()
        pipeline.prepare_template(parse_template(template_for(video)))
        return time.perf_counter() - started, cpu_seconds() - cpu, timers
    finally:
        for module, name in ((prepare, "prepare_media"), (tracking, "track_segment"), (plates, "make_clean_plate"),
                             (faces, "detect_faces")):
            setattr(module, name, getattr(module, name).__wrapped__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="folder for the inputs (kept)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"load before: {os.getloadavg()[0]:.2f}")
    video = make_recording(work / "recording.mp4")
    from loom.pipeline import prepare_template  # noqa: F401  (imports outside the timings)
    import loom.lipsync.faces, loom.media.prepare, loom.visual.plates, loom.visual.tracking  # noqa: E401, F401

    floors = [floor_seconds(video) for _ in range(args.repeat)]
    window = (round(1.0 * 24000 / 1001) - 3, round(4.0 * 24000 / 1001) + 3)  # the voice window and its handles
    frames = window[1] - window[0]
    faces_now = min((faces_now_seconds(video, *window, work / "faces.json") for _ in range(args.repeat)), key=lambda r: r[1])
    faces_before = min((faces_every_frame_seconds(video, *window) for _ in range(args.repeat)), key=lambda r: r[1])
    runs = []
    for k in range(args.repeat):
        home = work / f"home-{k}"
        shutil.rmtree(home, ignore_errors=True)
        runs.append(prepare_once(video, home))
        shutil.rmtree(home, ignore_errors=True)
    total, cpu, timers = min(runs, key=lambda r: r[0])
    floor, floor_cpu = min(f[0] for f in floors), min(f[1] for f in floors)
    print(f"recording: {SECONDS:.0f} s 1280x720 H.264 + AAC (real film footage), best of {args.repeat}")
    print(f"prepare_template: {total:.2f} s wall, {cpu:.2f} CPU-s (all threads; least CPU of the runs: "
          f"{min(r[1] for r in runs):.2f})")
    print("  steps (wall; faces run beside tracking and plates, the audio beside the video work):")
    for label in ("media", "tracking", "plates", "faces"):
        print(f"  {label:9s} {timers.seconds.get(label, 0.0):.2f} s")
    print(f"faces alone, per 720p frame ({frames} frames, least CPU of {args.repeat}): "
          f"{faces_now[0] / frames * 1000:.1f} ms wall, {faces_now[1] / frames * 1000:.1f} ms CPU; "
          f"every frame at 640 px as before: {faces_before[0] / frames * 1000:.1f} ms wall, "
          f"{faces_before[1] / frames * 1000:.1f} ms CPU ({faces_before[1] / faces_now[1]:.1f}x the CPU)")
    print(f"floor (decode every frame and the audio once): {floor:.2f} s wall, {floor_cpu:.2f} CPU-s")
    print(f"prepare / floor: {total / floor:.1f}x wall, {cpu / floor_cpu:.1f}x CPU")
    print(f"load after: {os.getloadavg()[0]:.2f}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
