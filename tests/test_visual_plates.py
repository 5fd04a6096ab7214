"""Clean plates: the original removed once at prepare, so a later recipient only draws its value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import loom.media.frames
import loom.visual.draw
import loom.visual.plates
from loom.media.patches import PatchSet
from loom.visual.draw import draw_segment
from loom.visual.plates import load_clean_plate, make_clean_plate
from loom.visual.tracking import load_track
from tests.test_visual_draw import _logo_png, pan, scroll  # noqa: F401  (fixtures)


def _with_plate(prepared, seg, root: Path):
    track = load_track(prepared.tracks[seg.id])
    uri = make_clean_plate(prepared.working_video_uri, seg, track, str(root / "plates" / f"{seg.id}.npz"))
    return prepared.model_copy(update={"clean_plates": {seg.id: uri}}), uri


def _count_decoding(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every read_frames call the drawing step makes (cost path), still decoding for real."""
    calls: list[tuple[int, int]] = []
    real = loom.media.frames.read_frames

    def counted(uri: str, first: int, stop: int, *args, **kwargs):
        calls.append((first, stop))
        return real(uri, first, stop, *args, **kwargs)

    monkeypatch.setattr(loom.visual.draw, "read_frames", counted)
    return calls


def _same_patches(a_uri: str, b_uri: str) -> int:
    """Largest per-channel difference between two patch sets, which must cover the same frames."""
    a, b = PatchSet.load(a_uri), PatchSet.load(b_uri)
    assert sorted(a.frames) == sorted(b.frames) and len(a) > 0
    worst = 0
    for f in a.frames:
        (pa,), (pb,) = a.frames[f], b.frames[f]
        assert (pa.x, pa.y, pa.rgba.shape) == (pb.x, pb.y, pb.rgba.shape)
        worst = max(worst, int(np.abs(pa.rgba.astype(int) - pb.rgba.astype(int)).max()))
    return worst


@pytest.mark.parametrize("kind", ["text", "image"])
def test_second_recipient_draws_over_the_stored_plate_without_decoding(kind, scroll, pan, tmp_path, monkeypatch) -> None:  # noqa: F811
    prepared, seg, frames, _, root = scroll if kind == "text" else pan
    value = "Globex Industries" if kind == "text" else str(_logo_png(tmp_path / "logo.png"))
    plated, plate_uri = _with_plate(prepared, seg, tmp_path)
    removal_ref = draw_segment(prepared, seg, value, str(tmp_path / "removal.npz"))  # older prepared template

    calls = _count_decoding(monkeypatch)
    reads: list[str] = []
    real_read = loom.visual.plates.read_npz
    monkeypatch.setattr(loom.visual.plates, "read_npz", lambda uri: reads.append(uri) or real_read(uri))
    plate_ref = draw_segment(plated, seg, value, str(tmp_path / "plate.npz"))

    assert calls == [], "a recipient with a stored plate must not decode the span"
    assert plate_uri in reads
    assert plate_ref.qa["clean_plate"] is True and removal_ref.qa["clean_plate"] is False
    assert plate_ref.qa["removal"] == removal_ref.qa["removal"]
    assert plate_ref.frames_patched == removal_ref.frames_patched == len(frames)
    if kind == "text":  # the look sampled from the original at prepare is the one used
        for key in ("color", "bold", "align", "font_size", "original_cap_height"):
            assert plate_ref.qa[key] == removal_ref.qa[key]
    assert _same_patches(plate_ref.uri, removal_ref.uri) <= 1


def test_fallback_decodes_when_the_plate_is_missing_or_for_another_span(scroll, tmp_path, monkeypatch) -> None:  # noqa: F811
    prepared, seg, frames, _, root = scroll
    plated, plate_uri = _with_plate(prepared, seg, tmp_path)
    track = load_track(prepared.tracks[seg.id])
    shifted = track.model_copy(update={"first_frame": track.first_frame + 1})
    assert load_clean_plate(plate_uri, seg.id, shifted) is None
    assert load_clean_plate(plate_uri, "other", track) is None

    calls = _count_decoding(monkeypatch)
    gone = plated.model_copy(update={"clean_plates": {seg.id: str(tmp_path / "nowhere.npz")}})
    ref = draw_segment(gone, seg, "Globex", str(tmp_path / "fallback.npz"))
    assert calls and ref.qa["clean_plate"] is False and ref.frames_patched == len(frames)


def test_prepare_stores_a_plate_per_visual_segment_and_old_prepared_files_still_load(scroll, loom_home, tmp_path, monkeypatch) -> None:  # noqa: F811
    from loom import pipeline
    from loom.prepared import PreparedTemplate
    from loom.template import Template

    prepared, seg, frames, _, root = scroll
    template = Template(id="plates", base_video_path=prepared.working_video_uri, visual_segments=[seg])
    ready = pipeline.prepare_template(template)
    assert set(ready.clean_plates) == {seg.id}
    plate = load_clean_plate(ready.clean_plates[seg.id], seg.id, load_track(ready.tracks[seg.id]))
    assert plate is not None and len(plate.frames) == len(frames) and plate.look is not None and plate.look.found

    calls = _count_decoding(monkeypatch)
    ref = pipeline.draw_visual(ready, seg, {seg.placeholder_key: "Globex"}, str(tmp_path))
    assert calls == [] and ref.qa["clean_plate"] is True

    older = ready.model_dump(mode="json")
    del older["clean_plates"]  # a prepared.json written before plates existed
    assert PreparedTemplate.model_validate(older).clean_plates == {}


def test_preview_decodes_each_video_once_and_shows_the_right_frames(scroll, tmp_path, monkeypatch) -> None:  # noqa: F811
    import loom.visual.preview as preview
    from loom.template import VoiceSegment
    from tests.test_visual_draw import composite, decoded
    from tests.test_visual_tracking import write_mp4

    prepared, seg, frames, _, root = scroll
    template = prepared.template.model_copy(
        update={"voice_segments": [VoiceSegment(id="hello", start_time=0.2, end_time=0.8, template_text="Hi {name}")]}
    )
    p = prepared.model_copy(update={"template": template})
    ref = draw_segment(p, seg, "Globex", str(tmp_path / "p.npz"))
    out_video = write_mp4(tmp_path / "out.mp4", composite(decoded(p), ref.uri))

    opened: list[str] = []
    real = preview.read_video_frames
    monkeypatch.setattr(preview, "read_video_frames", lambda uri, a, b, **kw: opened.append(uri) or real(uri, a, b, **kw))
    wanted = [row[2] for row in preview._segments(p)]
    got = preview._frames_at(p.working_video_uri, wanted)
    assert len(opened) == 1 and sorted(got) == sorted(set(wanted))
    original = decoded(p)
    for index in wanted:  # the frame asked for, not a neighbour
        assert np.array_equal(got[index], original[index])
    opened.clear()
    preview.make_preview(p, str(out_video), str(tmp_path / "out.preview.png"))
    assert sorted(opened) == sorted([p.working_video_uri, str(out_video)])  # one pass per video


def test_personalize_previews_from_the_renders_frames_without_decoding_the_output(loom_home: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The preview shows what the render encoded and what it copied, decoded from nowhere new: the
    "before" frames come from the prepared folder's cache, the "after" ones from the render."""
    from PIL import Image

    import loom.visual.preview as preview
    from loom import pipeline
    from testkit.campaign_inputs import write_template

    template = write_template(tmp_path / "tpl", size=(320, 240))
    row = {"client_name": "Ada", "company_name": "Acme Robotics"}
    pipeline.personalize(str(template), row, str(tmp_path / "first.mp4"))  # prepares; caches "before"

    opened: list[str] = []
    real = preview.read_video_frames
    monkeypatch.setattr(preview, "read_video_frames", lambda uri, a, b, **kw: opened.append(uri) or real(uri, a, b, **kw))
    drawn: list[tuple[bool, bool]] = []
    real_png = preview.preview_png

    def recorded_png(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        png = real_png(*args, **kwargs)
        drawn.append((kwargs.get("decode_output", True), png is not None))
        return png

    monkeypatch.setattr(preview, "preview_png", recorded_png)
    result = pipeline.personalize(str(template), {**row, "company_name": "Globex"}, str(tmp_path / "second.mp4"))
    assert opened == []  # neither the working video nor the output was decoded for the preview
    assert drawn == [(False, True)]  # drawn once, while the output was still being written
    prepared = pipeline.prepare_template(pipeline.load_template(str(template)))
    assert Path(prepared.root, "preview-before.npz").is_file()

    # the same sheet made the slow way (decoding both videos) looks the same
    slow = preview.make_preview(prepared, result.output_uri, str(tmp_path / "slow.png"))
    assert opened and result.output_uri in opened
    fast_px = np.asarray(Image.open(result.preview_uri).convert("RGB"), dtype=np.float64)
    slow_px = np.asarray(Image.open(slow).convert("RGB"), dtype=np.float64)
    assert fast_px.shape == slow_px.shape
    mse = float(np.mean((fast_px - slow_px) ** 2))
    assert mse == 0 or 10 * np.log10(255**2 / mse) > 40  # pre-encode vs decoded pixels of one CRF-10 encode
    # each row shows the edit in the box (top of the frame) and the original pixels far from it:
    # the "after" frames are the render's patched frames, the "before" ones the working video's
    tw, th = preview.THUMB_WIDTH, round(240 * preview.THUMB_WIDTH / 320)

    def thumb(row: int, col: int) -> np.ndarray:
        y = preview.GAP + row * (th + preview.LABEL_HEIGHT + preview.GAP) + preview.LABEL_HEIGHT
        x = preview.GAP + col * (tw + preview.GAP)
        return fast_px[y : y + th, x : x + tw]

    for row in (0, 1):
        assert np.abs(thumb(row, 0)[: th // 3] - thumb(row, 1)[: th // 3]).max() > 50
        assert np.array_equal(thumb(row, 0)[th // 2 :], thumb(row, 1)[th // 2 :])


@pytest.mark.parametrize("kind", ["text", "image"])
def test_patches_handed_over_in_memory_are_the_ones_a_file_would_hold(kind, scroll, pan, tmp_path) -> None:  # noqa: F811
    from loom.media.patches import load_patch_source, release
    from loom.media.patched_frames import load_patches

    prepared, seg, frames, _, root = scroll if kind == "text" else pan
    value = "Globex Industries" if kind == "text" else str(_logo_png(tmp_path / "logo.png"))
    plated, _ = _with_plate(prepared, seg, tmp_path)
    stored = draw_segment(plated, seg, value, str(tmp_path / "stored.npz"))
    handed_uri = str(tmp_path / "handed.npz")
    handed = draw_segment(plated, seg, value, handed_uri, in_memory=True)
    try:
        assert not Path(handed_uri).exists()  # nothing written: the render lays each frame's patch
        assert handed.frames_patched == stored.frames_patched == len(frames)
        (by_stored, range_stored), (by_handed, range_handed) = load_patches([stored]), load_patches([handed])
        assert range_stored == range_handed and list(by_stored) == list(by_handed)
        for f in by_stored:
            (a,), (b,) = by_stored[f], by_handed[f]
            assert (a.x, a.y) == (b.x, b.y) and np.array_equal(a.rgba, b.rgba)  # the render gets the same pixels
    finally:
        release([handed_uri])
    with pytest.raises(FileNotFoundError):  # released: only a file could answer now
        load_patch_source(handed_uri)
