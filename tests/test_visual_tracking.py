"""Tracking a visual box: a planted mark on a panning textured scene, a static box, a lost mark.

The scenes here are also used by the other ``test_visual_*`` files.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from loom.media.probe import VideoInfo, probe_video
from loom.prepared import PreparedTemplate
from loom.template import Template, VisualSegment
from loom.visual.tracking import Track, load_track, track_segment
from testkit.media import write_mp4

SIZE = (320, 240)
MARK = (48, 32)
MARK_COLOR = (230, 40, 40)


# ---------------------------------------------------------------- scenes


def textured(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A camera-like textured surface: noise at three scales."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for step, amp in ((3, 20), (11, 35), (41, 45)):
        noise = rng.normal(0, 1, (h // step + 2, w // step + 2, 3)).astype(np.float32)
        img += amp * cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(img + 120, 0, 255).astype(np.uint8)


def plant_mark(img: np.ndarray, cx: float, cy: float, size: tuple[int, int] = MARK) -> None:
    """A red logo-like mark (white disc, yellow letters) centred at (cx, cy)."""
    w, h = size
    x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
    cv2.rectangle(img, (x0, y0), (x0 + w - 1, y0 + h - 1), MARK_COLOR, -1)
    cv2.circle(img, (x0 + h // 2, y0 + h // 2), h // 3, (250, 250, 250), -1)
    cv2.putText(img, "AC", (x0 + h - 4, y0 + h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)


def panning_scene(n: int = 50, step: tuple[float, float] = (2.3, 1.1), seed: int = 0, mark: bool = True):
    """Frames of a camera panning (sub-pixel steps) over a surface with a planted mark, and the
    mark's true centre on each frame."""
    w, h = SIZE
    world = textured(w * 2, h * 2, seed)
    mx, my = w * 0.5 + 40, h * 0.5
    if mark:
        plant_mark(world, mx, my)
    frames, centres = [], []
    for i in range(n):
        ox, oy = step[0] * i, step[1] * i
        m = np.float32([[1, 0, -ox], [0, 1, -oy]])
        frames.append(cv2.warpAffine(world, m, (w, h), flags=cv2.INTER_LINEAR))
        centres.append((mx - ox, my - oy))
    return frames, centres


def page(w: int, h: int, name: str = "Acme Corp", size: int = 22, seed: int = 1):
    """A tall web page: grey lines of 'text' and a white name plate holding ``name``.
    Returns the page and the plate's box (x, y, w, h)."""
    from loom.visual.fonts import font_chain

    img = Image.new("RGB", (w, h), (246, 247, 250))
    d = ImageDraw.Draw(img)
    rng = np.random.default_rng(seed)
    for y in range(10, h, 18):
        x = 12
        while x < w - 40:
            ww = int(rng.integers(15, 60))
            d.rectangle([x, y, x + ww, y + 6], fill=(190, 192, 200))
            x += ww + 8
    font = ImageFont.truetype(font_chain()[0].path, size)
    px, py, pw, ph = 60, 150, 200, 44
    d.rectangle([px - 6, py - 6, px + pw + 6, py + ph + 6], fill=(255, 255, 255), outline=(200, 200, 210))
    bbox = d.textbbox((0, 0), name, font=font)
    d.text((px + (pw - (bbox[2] - bbox[0])) // 2 - bbox[0], py + 8), name, font=font, fill=(30, 40, 120))
    return np.asarray(img), (px, py, pw, ph)


def scrolling_page(n: int = 40, step: float = 1.7, name: str = "Acme Corp"):
    """A screen recording scrolling down a page; the name plate's box on each frame."""
    w, h = SIZE
    world, plate = page(w, h * 2, name)
    frames, boxes = [], []
    for i in range(n):
        m = np.float32([[1, 0, 0], [0, 1, -step * i]])
        frames.append(cv2.warpAffine(world, m, (w, h), flags=cv2.INTER_LINEAR))
        boxes.append((plate[0], plate[1] - step * i, plate[2], plate[3]))
    return frames, boxes


def box_segment(box: tuple[float, float, float, float], kind: str = "image", seconds: float = 2.0, **extra) -> VisualSegment:
    w, h = SIZE
    x, y, bw, bh = box
    return VisualSegment(
        id=extra.pop("id", "seg"), segment_type=kind, start_time=0, end_time=seconds,
        x=x / w, y=y / h, width=bw / w, height=bh / h, placeholder_key=extra.pop("placeholder_key", "company"), **extra,
    )


def prepared_for(video: Path, info: VideoInfo, segments: list[VisualSegment], tracks: dict[str, str]) -> PreparedTemplate:
    template = Template(id="t", base_video_path=str(video), visual_segments=segments)
    return PreparedTemplate(
        template=template, version="test", root=str(video.parent), source=info, video=info,
        working_video_uri=str(video), audio_uri=str(video.parent / "audio.wav"), tracks=tracks,
    )


def centre_errors(track: Track, centres: list[tuple[float, float]]) -> np.ndarray:
    return np.array([np.hypot(b[0] + b[2] / 2 - c[0], b[1] + b[3] / 2 - c[1]) for b, c in zip(track.boxes, centres)])


# ---------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def pan_clip(tmp_path_factory: pytest.TempPathFactory):
    frames, centres = panning_scene()
    path = write_mp4(tmp_path_factory.mktemp("pan") / "pan.mp4", frames)
    return path, probe_video(str(path)), frames, centres


def test_planted_mark_is_followed_through_a_pan(pan_clip, tmp_path: Path) -> None:
    path, info, frames, centres = pan_clip
    cx, cy = centres[0]
    seg = box_segment((cx - MARK[0] / 2, cy - MARK[1] / 2, *MARK))
    track = track_segment(str(path), info, seg, str(tmp_path / "track.json"))
    assert not track.static
    assert len(track.boxes) == len(frames) == track.stop_frame - track.first_frame
    err = centre_errors(track, centres)
    assert np.median(err) <= 4.0 and np.percentile(err, 95) <= 10.0, err
    assert not any(track.lost) and min(track.confidence) > 0.6
    assert track.warnings == []
    again = load_track(str(tmp_path / "track.json"))
    assert again == track


def test_tracker_drift_is_corrected_by_re_anchoring(tmp_path: Path) -> None:
    """A grey card slides over the mark for 18 frames: CSRT alone follows the card and ends 100+ px
    off; re-anchoring on the mark's first appearance brings the box back, and the frames where
    the mark was hidden are flagged rather than drawn somewhere wrong."""
    frames, centres = panning_scene(n=50, step=(3.1, -1.7), seed=4)
    occluded = []
    for i, f in enumerate(frames):
        f = f.copy()
        if 12 <= i < 30:
            cx, cy = centres[i]
            ox = int(cx - 60 + (i - 12) * 6)
            cv2.rectangle(f, (ox, int(cy) - 30), (ox + 40, int(cy) + 30), (90, 90, 90), -1)
        occluded.append(f)
    path = write_mp4(tmp_path / "occluded.mp4", occluded)
    info = probe_video(str(path))
    cx, cy = centres[0]
    seg = box_segment((cx - MARK[0] / 2, cy - MARK[1] / 2, *MARK), seconds=2.0)
    track = track_segment(str(path), info, seg, str(tmp_path / "track.json"))
    err = centre_errors(track, centres)
    seen = err[~np.asarray(track.lost)]
    assert np.median(seen) <= 4.0 and np.percentile(seen, 95) <= 10.0, err
    assert err[32:].max() <= 4.0 and not any(track.lost[32:])  # back on the mark after the card
    assert not any(track.lost[:12])
    assert all(12 <= k < 32 for k, flag in enumerate(track.lost) if flag)
    assert track.reanchors >= 1


def test_static_box_is_detected_and_costs_no_tracking(tmp_path: Path) -> None:
    world = textured(*SIZE, seed=2)
    frames = []
    for i in range(30):
        f = world.copy()
        f[200:230, 10 + 3 * i : 40 + 3 * i] = (250, 250, 40)  # something moves elsewhere in the frame
        frames.append(f)
    plant = frames
    for f in plant:
        plant_mark(f, 160, 90)
    path = write_mp4(tmp_path / "static.mp4", plant)
    info = probe_video(str(path))
    seg = box_segment((160 - 24, 90 - 16, *MARK), seconds=1.2)
    track = track_segment(str(path), info, seg, str(tmp_path / "t.json"))
    assert track.static
    assert all(b == track.boxes[0] for b in track.boxes)
    assert not any(track.lost)


def test_mark_that_leaves_is_flagged_not_guessed(tmp_path: Path) -> None:
    """When the mark is covered (a different shot), frames are flagged and a warning says so."""
    frames, centres = panning_scene(n=40)
    other = textured(*SIZE, seed=9)
    frames = frames[:20] + [other] * 20  # a cut to a shot without the mark
    path = write_mp4(tmp_path / "cut.mp4", frames)
    info = probe_video(str(path))
    cx, cy = centres[0]
    seg = box_segment((cx - MARK[0] / 2, cy - MARK[1] / 2, *MARK), seconds=1.6)
    track = track_segment(str(path), info, seg, str(tmp_path / "t.json"))
    assert not any(track.lost[:20])
    assert all(track.lost[20:])
    assert track.scene_cuts == [20]
    assert track.box_at(25) is None and track.box_at(5) is not None
    assert any("not found on 20 of 40 frames" in w for w in track.warnings)


def test_scrolling_name_plate_is_followed(tmp_path: Path) -> None:
    frames, boxes = scrolling_page()
    path = write_mp4(tmp_path / "scroll.mp4", frames)
    info = probe_video(str(path))
    seg = box_segment(boxes[0], kind="text", seconds=1.6)
    track = track_segment(str(path), info, seg, str(tmp_path / "t.json"))
    err = centre_errors(track, [(x + w / 2, y + h / 2) for x, y, w, h in boxes])
    assert np.median(err) <= 2.0 and err.max() <= 4.0
    sizes = np.array([b[2] for b in track.boxes])
    assert np.abs(sizes - boxes[0][2]).max() < 0.05 * boxes[0][2]  # no scale drift on a pure scroll


def test_untracked_segment_keeps_its_box_without_decoding(tmp_path: Path) -> None:
    info = VideoInfo(uri="none.mp4", container="mp4", codec="h264", pix_fmt="yuv420p", width=320, height=240,
                     fps="25/1", time_base="1/12800", frame_count=50, duration=2.0)
    seg = box_segment((10, 10, 40, 20), track=False, seconds=1.0)
    track = track_segment("does-not-exist.mp4", info, seg, str(tmp_path / "t.json"))
    assert track.static and len(track.boxes) == 25 and track.boxes[0] == pytest.approx((10, 10, 40, 20))


def test_box_follows_a_zoom_including_its_scale(tmp_path: Path) -> None:
    """The camera zooms in by 30% while drifting: the box grows with the mark."""
    w, h = SIZE
    world = textured(w * 2, h * 2, 5)
    mx, my = w + 20, h + 10
    plant_mark(world, mx, my)
    frames, truth = [], []
    for i in range(50):
        s = 1.0 + 0.006 * i
        cxw, cyw = mx - 30 + 1.5 * i, my - 10 + 0.5 * i
        m = np.float32([[s, 0, w / 2 - s * cxw], [0, s, h / 2 - s * cyw]])
        frames.append(cv2.warpAffine(world, m, (w, h), flags=cv2.INTER_LINEAR))
        truth.append((s * mx + m[0, 2], s * my + m[1, 2], s))
    path = write_mp4(tmp_path / "zoom.mp4", frames)
    cx, cy, _ = truth[0]
    seg = box_segment((cx - MARK[0] / 2, cy - MARK[1] / 2, *MARK))
    track = track_segment(str(path), probe_video(str(path)), seg, str(tmp_path / "t.json"))
    err = centre_errors(track, [(a, b) for a, b, _ in truth])
    assert np.median(err) <= 4.0 and np.percentile(err, 95) <= 10.0
    scale_err = [abs(b[2] / MARK[0] - s) for b, (_, _, s) in zip(track.boxes, truth)]
    assert max(scale_err) < 0.05 and track.boxes[-1][2] > 1.2 * MARK[0]


def test_box_that_waits_then_moves(tmp_path: Path) -> None:
    """Still for 12 frames (the cheap static path), then a pan: followed from where it started."""
    frames, centres = panning_scene(n=36)
    frames = [frames[0]] * 12 + frames[:24]
    centres = [centres[0]] * 12 + centres[:24]
    path = write_mp4(tmp_path / "wait.mp4", frames)
    cx, cy = centres[0]
    seg = box_segment((cx - MARK[0] / 2, cy - MARK[1] / 2, *MARK), seconds=36 / 25)
    track = track_segment(str(path), probe_video(str(path)), seg, str(tmp_path / "t.json"))
    assert not track.static
    err = centre_errors(track, centres)
    assert np.median(err) <= 4.0 and err.max() <= 10.0


def test_after_a_cut_the_box_waits_for_its_mark_and_its_plate_is_that_shots(tmp_path: Path) -> None:
    """Shot A holds the mark; shot B (another surface, no mark) is flagged throughout and gets no
    plate; in shot C the mark is back elsewhere and is found again."""
    from loom.visual.plates import make_clean_plate

    w, h = SIZE
    shots = []
    for seed, centre, n in ((0, (120, 110), 12), (7, None, 10), (9, (210, 150), 12)):
        surface = textured(w, h, seed)
        if centre is not None:
            plant_mark(surface, *centre)
        shots += [surface.copy() for _ in range(n)]
    video = write_mp4(tmp_path / "cuts.mp4", shots)
    info = probe_video(str(video))
    seg = box_segment((120 - MARK[0] / 2, 110 - MARK[1] / 2, *MARK), seconds=34 / 25)
    track = track_segment(str(video), info, seg, str(tmp_path / "t.json"))
    assert track.scene_cuts == [12, 22]
    assert all(track.box_at(k) is None for k in range(12, 22))  # shot B: flagged, never drawn
    found = [track.box_at(k) for k in range(22, 34)]
    assert all(b is not None and abs(b[0] + b[2] / 2 - 210) < 3 and abs(b[1] + b[3] / 2 - 150) < 3 for b in found)

    from loom.visual.plates import load_clean_plate

    make_clean_plate(str(video), seg, track, str(tmp_path / "plate.npz"))
    plate = load_clean_plate(str(tmp_path / "plate.npz"), seg.id, track)
    assert plate is not None and set(range(12, 22)).isdisjoint(plate.frames)
    assert set(range(22, 34)) <= set(plate.frames)  # found again: drawn, over a plate of its own shot
