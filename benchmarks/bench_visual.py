"""Per-recipient cost of visual drawing: over stored clean plates against removing the original again.

    .venv/bin/python benchmarks/bench_visual.py [--keep DIR] [--repeat N]

Makes its own input: an 8 s 1280x720 30 fps H.264 clip with a name plate ("Acme Corp") scrolling
over a gradient slide (a ~4.5 s text segment) and a red mark planted on a panning textured
scene (a ~4.5 s image segment). Tracks both once and makes their clean plates once (prepare).
Then, for a second recipient, times ``draw_segment`` for both segments:

- before: the prepared template without plates (older prepared.json): decode the span, remove
  the original on every frame, lay the value over it
- after: with the plates: load them and lay the value over them

Prints wall and CPU seconds (best of N), the before/after ratio, the one-off plate cost, plate
sizes, the largest pixel difference between the two paths, and the load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loom.media.muxing import mux_frames  # noqa: E402
from loom.media.patches import PatchSet  # noqa: E402
from loom.media.probe import probe_video  # noqa: E402
from loom.prepared import PreparedTemplate  # noqa: E402
from loom.template import Template, VisualSegment  # noqa: E402
from loom.visual.draw import draw_segment  # noqa: E402
from loom.visual.plates import make_clean_plate  # noqa: E402
from loom.visual.tracking import track_segment  # noqa: E402

W, H, FPS, SECONDS = 1280, 720, 30, 8.0
TEXT_BOX = (120.0, 420.0, 360.0, 70.0)  # at t=0; scrolls up 1 px per frame
MARK = (160, 100)  # the planted mark, on a scene panning 2 px per frame
MARK_AT = (880.0, 300.0)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make_clip(path: Path) -> Path:
    rng = np.random.default_rng(7)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (H + 40, W + 600, 3), dtype=np.uint8), (0, 0), 3)
    texture = cv2.addWeighted(texture, 0.6, cv2.resize(rng.integers(60, 200, (30, 80, 3), dtype=np.uint8), (W + 600, H + 40)), 0.4, 0)
    ramp = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    slide = ((1 - ramp) * np.array([235, 240, 250]) + ramp * np.array([200, 210, 235])).astype(np.uint8)
    slide = np.repeat(slide, W, axis=1)
    n = int(SECONDS * FPS)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.options = {"crf": "18", "preset": "veryfast"}

        def video() -> Iterator[av.VideoFrame]:
            for i in range(n):
                frame = slide.copy()
                shift = 2 * i  # the right half is camera footage panning left
                frame[:, 640:] = texture[20 : 20 + H, shift : shift + 640]
                mx, my = int(MARK_AT[0] - shift), int(MARK_AT[1])
                if 640 <= mx and mx + MARK[0] <= W:
                    cv2.rectangle(frame, (mx, my), (mx + MARK[0], my + MARK[1]), (200, 30, 30), -1)
                    cv2.circle(frame, (mx + MARK[0] // 2, my + MARK[1] // 2), 30, (250, 250, 250), -1)
                x, y, bw, bh = TEXT_BOX
                y -= i
                cv2.rectangle(frame, (int(x), int(y)), (int(x + bw), int(y + bh)), (255, 255, 255), -1)
                cv2.putText(frame, "Acme Corp", (int(x) + 40, int(y) + 50), cv2.FONT_HERSHEY_DUPLEX, 1.5, (30, 40, 120), 2, cv2.LINE_AA)
                vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
                vf.pts, vf.time_base = i, Fraction(1, FPS)
                yield vf

        mux_frames(out, vs, video())
    return path


def segments() -> list[VisualSegment]:
    t0, t1 = 0.5, 5.0
    x, y, bw, bh = TEXT_BOX
    y -= t0 * FPS  # where the plate is on the segment's first frame
    text = VisualSegment(id="name", segment_type="text", start_time=t0, end_time=t1, x=x / W, y=y / H,
                         width=bw / W, height=bh / H, placeholder_key="company")
    s0, s1 = 1.0, 5.5
    mx = MARK_AT[0] - 2 * s0 * FPS
    image = VisualSegment(id="logo", segment_type="image", start_time=s0, end_time=s1, x=mx / W, y=MARK_AT[1] / H,
                          width=MARK[0] / W, height=MARK[1] / H, placeholder_key="logo")
    return [text, image]


def logo_png(path: Path) -> Path:
    logo = np.zeros((120, 240, 4), np.uint8)
    logo[20:100, 20:220] = (20, 200, 90, 255)
    cv2.circle(logo, (120, 60), 28, (255, 255, 255, 255), -1)
    cv2.imwrite(str(path), cv2.cvtColor(logo, cv2.COLOR_RGBA2BGRA))
    return path


def timed(fn, repeat: int) -> tuple[float, float, object]:
    best_wall, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), cpu_seconds()
        result = fn()
        best_wall, best_cpu = min(best_wall, time.perf_counter() - w0), min(best_cpu, cpu_seconds() - c0)
    return best_wall, best_cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="folder to keep the inputs and outputs in")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench-visual-"))
    root.mkdir(parents=True, exist_ok=True)
    video = make_clip(root / "base.mp4")
    info = probe_video(str(video))
    segs = segments()
    tracks, plates = {}, {}
    plate_wall = plate_cpu = 0.0
    for seg in segs:
        track = track_segment(str(video), info, seg, str(root / f"{seg.id}.json"))
        tracks[seg.id] = str(root / f"{seg.id}.json")
        w0, c0 = time.perf_counter(), cpu_seconds()
        plates[seg.id] = make_clean_plate(str(video), seg, track, str(root / "plates" / f"{seg.id}.npz"))
        plate_wall += time.perf_counter() - w0
        plate_cpu += cpu_seconds() - c0
    template = Template(id="bench", base_video_path=str(video), visual_segments=segs)
    before = PreparedTemplate(template=template, version="bench", root=str(root), source=info, video=info,
                              working_video_uri=str(video), audio_uri=str(root / "a.wav"), tracks=tracks)
    after = before.model_copy(update={"clean_plates": plates})
    values = {"company": "Globex Industries", "logo": str(logo_png(root / "logo.png"))}

    def draw(prepared: PreparedTemplate, tag: str) -> list[str]:
        return [draw_segment(prepared, s, values[s.placeholder_key], str(root / f"{tag}-{s.id}.npz")).uri for s in segs]

    draw(after, "warm")  # fonts, imports and codec start-up out of both timings
    b_wall, b_cpu, b_uris = timed(lambda: draw(before, "before"), args.repeat)
    a_wall, a_cpu, a_uris = timed(lambda: draw(after, "after"), args.repeat)
    worst = 0
    for bu, au in zip(b_uris, a_uris):  # type: ignore[arg-type]
        b, a = PatchSet.load(bu), PatchSet.load(au)
        assert sorted(a.frames) == sorted(b.frames)
        for f in a.frames:
            worst = max(worst, int(np.abs(a.frames[f][0].rgba.astype(int) - b.frames[f][0].rgba.astype(int)).max()))
    frames = sum(len(PatchSet.load(u)) for u in a_uris)  # type: ignore[union-attr]
    sizes = {k: os.path.getsize(v) // 1024 for k, v in plates.items()}
    print(f"clip: {W}x{H} {FPS} fps {SECONDS:.0f} s; segments: text 4.5 s + image 4.5 s; {frames} patched frames")
    print(f"prepare (once): clean plates {plate_wall:.2f} s wall, {plate_cpu:.2f} s CPU; sizes KiB {sizes}")
    print(f"before (remove per recipient): {b_wall:.3f} s wall, {b_cpu:.3f} s CPU  (best of {args.repeat})")
    print(f"after  (draw over plates):     {a_wall:.3f} s wall, {a_cpu:.3f} s CPU  (best of {args.repeat})")
    print(f"ratio before/after: {b_wall / a_wall:.1f}x wall, {b_cpu / a_cpu:.1f}x CPU; largest pixel difference {worst}")
    print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; cores {os.cpu_count()}")


if __name__ == "__main__":
    main()
