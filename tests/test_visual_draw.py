"""Drawing a recipient's value into a tracked box: text and logos, removal, feathering, errors, preview."""

from __future__ import annotations

import functools
import http.server
import io
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from loom import storage
from loom.settings import reload_settings
from loom.errors import InputError
from loom.media.patches import PatchSet, apply_patches
from loom.media.probe import probe_video
from loom.template import TextStyle, VoiceSegment
from loom.visual.draw import draw_segment
from loom.visual.preview import make_preview
from loom.visual.tracking import Track, track_segment
from tests.gcs_fixtures import gcs_bucket  # noqa: F401  (fixture)
from tests.test_visual_tracking import (
    MARK,
    MARK_COLOR,
    box_segment,
    panning_scene,
    prepared_for,
    scrolling_page,
    write_mp4,
)

LONG_NAME = "Bartholomew Christopherson GmbH & Co. KG"


def composite(frames: list[np.ndarray], patch_uri: str) -> list[np.ndarray]:
    """What the renderer shows: each frame with its patches alpha-composited."""
    patches = PatchSet.load(patch_uri)
    return [apply_patches(f.copy(), patches.frames.get(i, [])) for i, f in enumerate(frames)]


def ink_box(img: np.ndarray, region: tuple[int, int, int, int], background: tuple[int, int, int], threshold: float = 60.0):
    """Bounding box (frame coords) of pixels in ``region`` that differ from a flat background."""
    x0, y0, x1, y1 = region
    diff = np.abs(img[y0:y1, x0:x1].astype(np.float32) - np.asarray(background, np.float32)).max(axis=2)
    ys, xs = np.nonzero(diff > threshold)
    if len(xs) == 0:
        return None
    return x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.astype(np.float64).ravel() - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-9))


@pytest.fixture(scope="module")
def scroll(tmp_path_factory: pytest.TempPathFactory):
    """The scrolling page with 'Acme Corp' on a name plate, tracked once."""
    root = tmp_path_factory.mktemp("scroll")
    frames, boxes = scrolling_page()
    path = write_mp4(root / "scroll.mp4", frames)
    info = probe_video(str(path))
    seg = box_segment(boxes[0], kind="text", seconds=1.6, id="name")
    track_segment(str(path), info, seg, str(root / "name.json"))
    prepared = prepared_for(path, info, [seg], {"name": str(root / "name.json")})
    return prepared, seg, frames, boxes, root


@pytest.fixture(scope="module")
def pan(tmp_path_factory: pytest.TempPathFactory):
    """The panning textured scene with a planted mark, tracked once."""
    root = tmp_path_factory.mktemp("pan")
    frames, centres = panning_scene()
    path = write_mp4(root / "pan.mp4", frames)
    info = probe_video(str(path))
    cx, cy = centres[0]
    seg = box_segment((cx - MARK[0] / 2, cy - MARK[1] / 2, *MARK), kind="image", id="logo", placeholder_key="logo")
    track_segment(str(path), info, seg, str(root / "logo.json"))
    prepared = prepared_for(path, info, [seg], {"logo": str(root / "logo.json")})
    return prepared, seg, frames, centres, root


def decoded(prepared) -> list[np.ndarray]:
    from loom.media.frames import read_frames

    return [f for _, f in read_frames(prepared.working_video_uri, 0, prepared.video.frame_count)]


def test_name_is_replaced_and_follows_the_scroll(scroll) -> None:
    prepared, seg, frames, boxes, root = scroll
    ref = draw_segment(prepared, seg, "Globex", str(root / "globex.npz"))
    assert ref.kind == "visual" and ref.frames_patched == len(frames) and ref.first_frame == 0
    assert ref.qa["removal"] == {"flat": len(frames)} and not ref.qa["flagged"]
    original = decoded(prepared)
    out = composite(original, ref.uri)
    for i in (0, len(frames) // 2, len(frames) - 1):
        x, y, w, h = boxes[i]
        region = (int(x) - 5, int(round(y)) - 5, int(x + w) + 5, int(round(y + h)) + 5)
        new = ink_box(out[i], region, (255, 255, 255))
        old = ink_box(original[i], region, (255, 255, 255))
        assert new is not None
        # the new name sits inside the plate, centred like the old one, no taller than the old one
        assert new[0] >= x and new[2] <= x + w and new[1] >= y and new[3] <= y + h
        assert abs((new[0] + new[2]) / 2 - (old[0] + old[2]) / 2) <= 2.0
        assert (new[3] - new[1]) <= (old[3] - old[1]) + 1
        # the old name is gone: the box no longer correlates with it
        bx0, by0 = int(x), int(round(y))
        before = original[i][by0 : by0 + int(h), bx0 : bx0 + int(w)].mean(axis=2)
        after = out[i][by0 : by0 + int(h), bx0 : bx0 + int(w)].mean(axis=2)
        assert ncc(before, after) < 0.35
    # colour sampled from the original's dark blue (30, 40, 120) through 4:2:0 video
    r, g, b = (int(ref.qa["color"][k : k + 2], 16) for k in (1, 3, 5))
    assert b > r + 40 and b > g + 40


def test_long_name_shrinks_into_a_box_made_for_acme_corp(scroll) -> None:
    prepared, seg, frames, boxes, root = scroll
    ref = draw_segment(prepared, seg, LONG_NAME, str(root / "long.npz"))
    out = composite(decoded(prepared), ref.uri)
    for i in (0, len(frames) - 1):
        x, y, w, h = boxes[i]
        new = ink_box(out[i], (int(x) - 5, int(round(y)) - 5, int(x + w) + 5, int(round(y + h)) + 5), (255, 255, 255))
        assert new is not None
        assert new[0] >= x and new[2] <= x + w and new[1] >= y and new[3] <= y + h
        assert new[2] - new[0] > 0.6 * w  # shrunk to fit, not to nothing
    assert ref.qa["font_size"] < 22


@pytest.mark.parametrize("value", ["Zoë Ñúñez", "株式会社テスト", "Rocket 🚀 Labs"])
def test_names_in_other_scripts_draw_ink(scroll, value: str) -> None:
    prepared, seg, frames, boxes, root = scroll
    ref = draw_segment(prepared, seg, value, str(root / "intl.npz"))
    assert "warnings" not in ref.qa or ref.qa["warnings"] == []
    out = composite(decoded(prepared)[:1], ref.uri)[0]
    x, y, w, h = boxes[0]
    assert ink_box(out, (int(x), int(y), int(x + w), int(y + h)), (255, 255, 255)) is not None


def test_style_overrides_colour_and_background(scroll) -> None:
    prepared, seg, frames, boxes, root = scroll
    styled = seg.model_copy(update={"style": TextStyle(color="#ff0000", background="#00ff00", weight="bold")})
    ref = draw_segment(prepared, styled, "Globex", str(root / "styled.npz"))
    assert ref.qa["color"] == "#ff0000" and ref.qa["bold"] is True and ref.qa["removal"] == {"style": len(frames)}
    out = composite(decoded(prepared)[:1], ref.uri)[0]
    x, y, w, h = (int(v) for v in boxes[0])
    inner = out[y + 2 : y + h - 2, x + 2 : x + w - 2].reshape(-1, 3).astype(int)
    assert ((inner[:, 1] > 200) & (inner[:, 0] < 60)).mean() > 0.5  # green fill
    assert ((inner[:, 0] > 180) & (inner[:, 1] < 120)).sum() > 30  # red text


def _logo_png(path: Path) -> Path:
    """120x60 logo, transparent outside a green 100x40 rectangle with a white disc."""
    logo = np.zeros((60, 120, 4), np.uint8)
    logo[10:50, 10:110] = (20, 200, 90, 255)
    cv2.circle(logo, (60, 30), 14, (255, 255, 255, 255), -1)
    Image.fromarray(logo, "RGBA").save(path)
    return path


def _green_box(img: np.ndarray, cx: float, cy: float) -> tuple[float, float, float, float] | None:
    """Bounding box of the logo's green within a few pixels of the mark's box centred at (cx, cy)
    (the textured scene has greens of its own elsewhere)."""
    x0, y0 = max(0, int(cx - MARK[0] / 2) - 4), max(0, int(cy - MARK[1] / 2) - 4)
    crop = img[y0 : int(cy + MARK[1] / 2) + 5, x0 : int(cx + MARK[0] / 2) + 5].astype(int)
    g = (np.abs(crop - np.array([20, 200, 90])).max(axis=2) < 40).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(g)
    if count < 2:
        return None
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))  # the logo: the largest green blob
    x, y, w, h = stats[k, :4]
    return x0 + x, y0 + y, x0 + x + w, y0 + y + h


def test_logo_replaces_the_mark_and_stays_on_it(pan, tmp_path: Path) -> None:
    prepared, seg, frames, centres, root = pan
    ref = draw_segment(prepared, seg, str(_logo_png(tmp_path / "logo.png")), str(tmp_path / "logo.npz"))
    assert ref.frames_patched == len(frames)
    out = composite(decoded(prepared), ref.uri)
    errors, aspects = [], []
    for img, (cx, cy) in zip(out, centres):
        gb = _green_box(img, cx, cy)
        assert gb is not None
        errors.append(np.hypot((gb[0] + gb[2]) / 2 - cx, (gb[1] + gb[3]) / 2 - cy))
        aspects.append((gb[2] - gb[0]) / (gb[3] - gb[1]))
        # nothing of the old red mark is left in or around the box
        x0, y0 = int(cx - MARK[0] / 2) - 4, int(cy - MARK[1] / 2) - 4
        around = img[max(0, y0) : y0 + MARK[1] + 8, max(0, x0) : x0 + MARK[0] + 8].reshape(-1, 3).astype(int)
        red = (np.abs(around - np.asarray(MARK_COLOR)).max(axis=1) < 40).sum()
        assert red <= 3, red
        # the logo sits inside the box
        assert gb[0] >= cx - MARK[0] / 2 - 1 and gb[2] <= cx + MARK[0] / 2 + 1
        assert gb[2] - gb[0] >= 0.7 * MARK[0]  # and fills it (contain: width limits; green is 100/120 of the logo)
    errors = np.asarray(errors)
    assert np.median(errors) <= 4.0 and np.percentile(errors, 95) <= 10.0
    assert abs(np.median(aspects) - 2.5) < 0.3  # the logo's 100x40 green keeps its aspect


def test_jpeg_logo_from_gcs(pan, gcs_bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    prepared, seg, frames, centres, root = pan
    monkeypatch.setenv("LOOM_ALLOWED_BUCKETS", gcs_bucket.removeprefix("gs://").split("/")[0])
    reload_settings()
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), (20, 200, 90), np.uint8)).save(buf, format="JPEG")
    uri = storage.write_bytes(f"{gcs_bucket}/logos/acme.jpg", buf.getvalue())
    ref = draw_segment(prepared, seg, uri, str(tmp_path / "jpeg.npz"))
    first = composite(decoded(prepared)[:1], ref.uri)[0]
    gb = _green_box(first, *centres[0])
    assert gb is not None and abs((gb[2] - gb[0]) - (gb[3] - gb[1])) <= 2  # square stays square


def test_logo_over_http(pan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepared, seg, frames, centres, root = pan
    monkeypatch.setenv("LOOM_INPUT_ALLOWED_HOSTS", "127.0.0.1")  # the test's server stands for a public host
    reload_settings()
    _logo_png(tmp_path / "logo.png")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/logo.png"
        ref = draw_segment(prepared, seg, url, str(tmp_path / "http.npz"))
        assert ref.frames_patched == len(frames)
        with pytest.raises(InputError) as exc:
            draw_segment(prepared, seg, url.replace("logo.png", "missing.png"), str(tmp_path / "x.npz"))
        assert "missing.png" in str(exc.value)
    finally:
        server.shutdown()


@pytest.mark.parametrize("make", ["text", "missing", "empty", "truncated"])
def test_unusable_logo_fails_with_one_line_naming_the_value(pan, tmp_path: Path, make: str) -> None:
    prepared, seg, frames, centres, root = pan
    path = tmp_path / "logo.png"
    if make == "text":
        path.write_text("<html>not a logo</html>")
    elif make == "empty":
        path.write_bytes(b"")
    elif make == "truncated":
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="PNG")
        path.write_bytes(buf.getvalue()[:40])
    with pytest.raises(InputError) as exc:
        draw_segment(prepared, seg, str(path), str(tmp_path / "x.npz"))
    line = str(exc.value)
    assert exc.value.field == "logo" and str(path) in line and "\n" not in line
    assert not (tmp_path / "x.npz").exists()


def test_lost_frames_are_left_untouched_and_patch_edges_fade(scroll, tmp_path: Path) -> None:
    prepared, seg, frames, boxes, root = scroll
    track = Track.model_validate_json(Path(prepared.tracks["name"]).read_text())
    lost = [i in (5, 6, 7) for i in range(len(track.boxes))]
    flagged = track.model_copy(update={"lost": lost})
    uri = str(tmp_path / "flagged.json")
    storage.write_text(uri, flagged.model_dump_json())
    p = prepared.model_copy(update={"tracks": {"name": uri}})
    ref = draw_segment(p, seg, "Globex", str(tmp_path / "p.npz"))
    patches = PatchSet.load(ref.uri)
    assert sorted(patches.frames) == [i for i in range(len(frames)) if i not in (5, 6, 7)]
    assert ref.qa["flagged"] is True and ref.qa["frames_unedited"] == 3
    alpha = patches.frames[0][0].rgba[..., 3]
    assert alpha[0, :].max() <= 64 and alpha[-1, :].max() <= 64 and alpha[:, 0].max() <= 64
    assert alpha[alpha.shape[0] // 2, alpha.shape[1] // 2] == 255


def test_preview_shows_before_and_after_of_each_segment(scroll, tmp_path: Path) -> None:
    prepared, seg, frames, boxes, root = scroll
    template = prepared.template.model_copy(
        update={"voice_segments": [VoiceSegment(id="hello", start_time=0.2, end_time=0.8, template_text="Hi {name}")]}
    )
    p = prepared.model_copy(update={"template": template})
    ref = draw_segment(p, seg, "Globex", str(tmp_path / "p.npz"))
    out_video = write_mp4(tmp_path / "out.mp4", composite(decoded(p), ref.uri))
    png = make_preview(p, str(out_video), str(tmp_path / "out.preview.png"))
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[0] > 2 * 240 and img.shape[1] > 2 * 320  # two rows (voice, visual), two columns
    half = img.shape[1] // 2
    lower = img[img.shape[0] // 2 :]
    assert np.abs(lower[:, :half - 4].astype(int) - lower[:, half + 4 : 2 * half].astype(int)).mean() > 0.5


def test_name_scrolling_out_of_view_stays_replaced(tmp_path: Path) -> None:
    """The plate scrolls off the top: while any of it shows, it shows the new name, never the old."""
    frames, boxes = scrolling_page(n=60, step=3.0)
    path = write_mp4(tmp_path / "away.mp4", frames)
    info = probe_video(str(path))
    seg = box_segment(boxes[0], kind="text", seconds=2.4, id="name")
    track = track_segment(str(path), info, seg, str(tmp_path / "name.json"))
    assert not any(track.lost)
    err = [abs(b[1] - t[1]) for b, t in zip(track.boxes, boxes)]
    assert max(err) <= 2.0
    prepared = prepared_for(path, info, [seg], {"name": str(tmp_path / "name.json")})
    ref = draw_segment(prepared, seg, "Globex", str(tmp_path / "p.npz"))
    original = decoded(prepared)
    out = composite(original, ref.uri)
    last = len(frames) - 1
    x, y, w, h = boxes[last]  # 60% of the plate is above the frame
    visible = (slice(0, int(y + h)), slice(int(x), int(x + w)))
    assert ncc(original[last][visible].mean(axis=2), out[last][visible].mean(axis=2)) < 0.5
    assert ink_box(out[last], (int(x), 0, int(x + w), int(y + h)), (255, 255, 255)) is not None


def test_template_font_is_used_first_and_a_missing_one_is_named(scroll, tmp_path: Path) -> None:
    from loom.visual.fonts import font_chain

    prepared, seg, frames, boxes, root = scroll
    italic = str(Path(font_chain()[0].path).with_name("NotoSans-Italic[wght].ttf"))
    styled = seg.model_copy(update={"style": TextStyle(font=italic)})
    ref = draw_segment(prepared, styled, "Globex 株式会社", str(tmp_path / "italic.npz"))
    assert "NotoSans-Italic[wght]" in ref.qa["fonts"] and any("CJK" in f for f in ref.qa["fonts"])
    missing = seg.model_copy(update={"style": TextStyle(font=str(tmp_path / "nope.ttf"))})
    with pytest.raises(InputError) as exc:
        draw_segment(prepared, missing, "Globex", str(tmp_path / "x.npz"))
    assert "nope.ttf" in str(exc.value) and "style.font" in exc.value.field
