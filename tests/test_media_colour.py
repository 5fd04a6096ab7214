"""Colour of composited patches: BT.709 and full-range frames get a patch in their own matrix and range.

Every other test clip is untagged (BT.601, limited range), so a wrong matrix or an ignored range flag
would pass there. Here the frames and clips are tagged, and what the engine writes is checked against
a reference conversion written from the standard equations (not ``to_ndarray("rgb24")``, whose own
choice of matrix would hide the engine's).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import pytest

from loom.edits import PatchSetRef
from loom.media.overlay import patch_yuv420p
from loom.media.patches import Patch, PatchSet
from loom.media.prepare import prepare_media
from loom.media.patched_frames import patch_frame
from loom.media.render import RenderReport, render_recipient
from loom.prepared import PreparedTemplate
from loom.template import Template
from testkit.media import make_clip, psnr

# (Kr, Kb) per matrix; FFmpeg's AVColorSpace 1 is BT.709, 5/6 (and unspecified) BT.601.
KRKB = {709: (0.2126, 0.0722), 601: (0.299, 0.114)}
BT709_TAGS = "colorprim=bt709:transfer=bt709:colormatrix=bt709"

Colours = dict[str, tuple[int, int, int]]
# Opaque colours whose YUV differs most between the matrices (red's luma: 63 in BT.709, 81 in BT.601,
# limited range), and a grey whose chroma is neutral in all of them.
COLOURS: Colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "grey": (128, 128, 128)}
# In full range pure red's Cr and pure blue's Cb are 255.5, which the overlay wraps to 0 instead of
# clipping to 255 (test_full_range_saturated_chroma_clips_instead_of_wrapping): the other full-range
# checks use primaries just short of it.
NEAR_PURE: Colours = {"red": (250, 0, 0), "green": (0, 250, 0), "blue": (0, 0, 250), "grey": (128, 128, 128)}


def matrix_of(colorspace: int | None) -> int:
    """The matrix a decoder/player uses for a tag: BT.709 only when tagged so (unspecified is BT.601)."""
    return 709 if colorspace == 1 else 601


def rgb_to_yuv(rgb: tuple[int, int, int], matrix: int, full: bool) -> tuple[float, float, float]:
    kr, kb = KRKB[matrix]
    r, g, b = (c / 255 for c in rgb)
    y = kr * r + (1 - kr - kb) * g + kb * b
    pb, pr = (b - y) / (2 * (1 - kb)), (r - y) / (2 * (1 - kr))
    ys, cs, offset = (255, 255, 0) if full else (219, 224, 16)
    clip = lambda c: min(255.0, max(0.0, c))  # noqa: E731  # codes clip to 0..255 (H.273): full-range Cr of red is 255.5
    return clip(offset + ys * y), clip(128 + cs * pb), clip(128 + cs * pr)


def yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, matrix: int, full: bool) -> np.ndarray:
    """(..., 3) RGB in 0..255 (float, clipped) of Y/U/V sample arrays of one shape."""
    kr, kb = KRKB[matrix]
    y, u, v = (np.asarray(a, np.float64) for a in (y, u, v))
    if full:
        yn, pb, pr = y / 255, (u - 128) / 255, (v - 128) / 255
    else:
        yn, pb, pr = (y - 16) / 219, (u - 128) / 224, (v - 128) / 224
    r, b = yn + 2 * (1 - kr) * pr, yn + 2 * (1 - kb) * pb
    g = (yn - kr * r - kb * b) / (1 - kr - kb)
    return np.clip(np.stack([r, g, b], axis=-1) * 255, 0, 255)


def frame_rgb(frame: av.VideoFrame, matrix: int, full: bool) -> np.ndarray:
    """A 4:2:0 frame as RGB by the reference equations (chroma repeated over its 2x2 block)."""
    y, u, v = planes(frame)
    up = [np.repeat(np.repeat(c, 2, axis=0), 2, axis=1) for c in (u, v)]
    return yuv_to_rgb(y, up[0], up[1], matrix, full)


def planes(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sizes = ((frame.height, frame.width), (frame.height // 2, frame.width // 2), (frame.height // 2, frame.width // 2))
    out = [np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:h, :w] for p, (h, w) in zip(frame.planes, sizes)]
    return out[0], out[1], out[2]


def box_patches(size: int, colours: Colours = COLOURS) -> list[tuple[str, tuple[int, int, int], Patch]]:
    """One opaque square per colour, side by side, at even positions (whole chroma blocks)."""
    out = []
    for k, (name, rgb) in enumerate(colours.items()):
        rgba = np.empty((size, size, 4), np.uint8)
        rgba[..., :3], rgba[..., 3] = rgb, 255
        out.append((name, rgb, Patch(x=8 + k * (size + 8), y=8, rgba=rgba)))
    return out


# ---------------------------------------------------------------- overlay: the YUV each matrix and range give


@pytest.mark.parametrize(("colorspace", "full"), [(1, False), (1, True), (5, False), (None, False), (5, True)],
                         ids=["bt709-limited", "bt709-full", "bt601-limited", "untagged-limited", "bt601-full"])
def test_patch_yuv_matches_the_reference_conversion(colorspace: int | None, full: bool) -> None:
    h, w = 48, 128
    y, u, v = np.full((h, w), 90, np.uint8), np.full((h // 2, w // 2), 110, np.uint8), np.full((h // 2, w // 2), 140, np.uint8)
    before = y.copy(), u.copy(), v.copy()
    boxes = box_patches(16, NEAR_PURE if full else COLOURS)
    patch_yuv420p(y, u, v, [p for *_, p in boxes], colorspace, full)
    matrix = matrix_of(colorspace)
    inside = np.zeros((h, w), bool)
    for name, rgb, p in boxes:
        ref = rgb_to_yuv(rgb, matrix, full)
        got = (y[p.y : p.y + 16, p.x : p.x + 16], u[p.y // 2 : p.y // 2 + 8, p.x // 2 : p.x // 2 + 8],
               v[p.y // 2 : p.y // 2 + 8, p.x // 2 : p.x // 2 + 8])
        for plane, value, expected in zip("YUV", got, ref):
            assert np.abs(value.astype(np.float64) - expected).max() <= 1, f"{name} {plane}: {np.unique(value)} != {expected:.1f}"
        inside[p.y : p.y + 16, p.x : p.x + 16] = True
    # pixels and chroma blocks no patch touches keep their exact values
    assert np.array_equal(y[~inside], before[0][~inside])
    assert np.array_equal(u[~inside[::2, ::2]], before[1][~inside[::2, ::2]])
    assert np.array_equal(v[~inside[::2, ::2]], before[2][~inside[::2, ::2]])


def test_the_matrices_differ_enough_to_tell_apart() -> None:
    # the test above would not notice a swapped matrix if the colours converted alike in both
    assert abs(rgb_to_yuv(COLOURS["red"], 709, False)[0] - rgb_to_yuv(COLOURS["red"], 601, False)[0]) > 15
    assert abs(rgb_to_yuv(NEAR_PURE["green"], 709, True)[0] - rgb_to_yuv(NEAR_PURE["green"], 709, False)[0]) > 8


def test_full_range_saturated_chroma_clips_instead_of_wrapping() -> None:
    # latent today: full-range H.264 decodes as yuvj420p, which patch_frame sends through RGB instead
    y, u, v = np.full((16, 32), 90, np.uint8), np.full((8, 16), 110, np.uint8), np.full((8, 16), 140, np.uint8)
    red, blue = np.zeros((16, 16, 4), np.uint8), np.zeros((16, 16, 4), np.uint8)
    red[..., 0] = red[..., 3] = blue[..., 2] = blue[..., 3] = 255
    patch_yuv420p(y, u, v, [Patch(x=0, y=0, rgba=red), Patch(x=16, y=0, rgba=blue)], 1, True)
    assert v[:, :8].min() >= 254 and u[:, 8:].min() >= 254  # pure red's Cr, pure blue's Cb: 255, not 0


# ---------------------------------------------------------------- render: a decoded frame's own tags pick the conversion


@pytest.mark.parametrize(("colorspace", "color_range"), [(1, 1), (1, 2), (6, 2)], ids=["bt709-limited", "bt709-full", "bt601-full"])
def test_patch_frame_reads_the_frames_matrix_and_range(colorspace: int, color_range: int) -> None:
    """A yuv420p frame as the renderer gets it (decoder or frame cache) carries its tags; the
    patch must be converted with them, and the frame keep them."""
    frame = av.VideoFrame(128, 48, "yuv420p")
    for plane, value in zip(frame.planes, (90, 110, 140)):
        plane.update(bytes([value]) * plane.buffer_size)
    frame.colorspace, frame.color_range, frame.color_primaries, frame.color_trc = colorspace, color_range, 1, 1
    boxes = box_patches(16, NEAR_PURE if color_range == 2 else COLOURS)
    out = patch_frame(frame, [p for *_, p in boxes])
    assert (out.format.name, out.colorspace, out.color_range) == ("yuv420p", colorspace, color_range)
    rgb = frame_rgb(out, matrix_of(colorspace), color_range == 2)
    for name, colour, p in boxes:
        got = rgb[p.y : p.y + 16, p.x : p.x + 16].reshape(-1, 3)
        assert np.abs(got - colour).max() <= 2, f"{name}: {got.mean(axis=0).round(1)}"


# ---------------------------------------------------------------- render: tagged clips end to end

BOX = 24  # side of each colour square in the rendered clips (160x120)
SPAN = (1.2, 1.8)  # seconds: frames 30-45; 45 falls inside a 10-frame GOP, so prepare plants an IDR there


@dataclass
class Rendered:
    src: Path
    prepared: PreparedTemplate
    reports: list[RenderReport]
    captured: dict[int, object]


def prepared_for(src: Path, root: Path, cuts: list[float]) -> PreparedTemplate:
    pm = prepare_media(str(src), cuts, str(root))
    return PreparedTemplate(template=Template(id="t1", base_video_path=str(src)), version="v1", root=str(root), **pm.model_dump())


def patch_set(prepared: PreparedTemplate, path: Path) -> PatchSetRef:
    first, stop = prepared.segment_frames(*SPAN)
    ps = PatchSet()
    for f in range(first, stop):
        for *_, patch in box_patches(BOX):
            ps.add(f, patch)
    ps.save(str(path))
    return PatchSetRef(segment_id="s-visual", kind="visual", uri=str(path), first_frame=first, stop_frame=stop)


def render_tagged(tmp: Path, x264_params: str) -> Rendered:
    """A 2 s 160x120 H.264 clip with these x264 VUI tags, prepared and rendered for two recipients:
    the first decodes the span (and stores it in the frame cache), the second reads the cache."""
    src = make_clip(tmp / "rec.mp4", seconds=2.0, size=(160, 120), gop=10, options={"x264-params": x264_params})
    prepared = prepared_for(src, tmp / "prep", list(SPAN))
    first, _ = prepared.segment_frames(*SPAN)
    captured: dict[int, object] = {first + 2: None}
    reports = [render_recipient(prepared, [], [patch_set(prepared, tmp / f"{k}.npz")], str(tmp / f"{k}.mp4"),
                                capture=captured if k == 0 else None)
               for k in range(2)]
    return Rendered(src, prepared, reports, captured)


def decoded(path: str | Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


def colour_tags(obj: object) -> tuple[int, int, int, int]:
    """(colorspace, color_range, color_primaries, color_trc) of a frame or codec context; 0 for None."""
    space, range_, primaries, trc = (int(getattr(obj, n) or 0) for n in ("colorspace", "color_range", "color_primaries", "color_trc"))
    return space, range_, primaries, trc


def sps_colour(path: str | Path) -> list[tuple[int, ...]]:
    """(colour_primaries, transfer_characteristics, matrix_coefficients, video_full_range_flag) of every
    SPS in the file, avcC and in-band; () for an SPS without them. FFmpeg's decoder keeps the previous
    SPS's colour when a later one has none, so decoded frames alone cannot tell an untagged span."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path), "-map", "0:v",
           "-c", "copy", "-bsf:v", "trace_headers", "-f", "null", "-"]
    trace = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    fields = ("colour_primaries", "transfer_characteristics", "matrix_coefficients", "video_full_range_flag")
    found: list[dict[str, int]] = []
    for line in trace.splitlines():
        if line.endswith("] Sequence Parameter Set"):
            found.append({})
        elif (m := re.search(r"\] \d+\s+(\w+)\s+[01]+ = (\d+)$", line)) and found and m[1] in fields:
            found[-1].setdefault(m[1], int(m[2]))
    return [tuple(sps[f] for f in fields) if all(f in sps for f in fields) else () for sps in found]


def assert_boxes(rgb: np.ndarray, where: str, tolerance: float = 6) -> None:
    """Each colour square (its inside, away from the encoder's edge ringing) is its patch's RGB."""
    for name, colour, p in box_patches(BOX):
        got = rgb[p.y + 4 : p.y + BOX - 4, p.x + 4 : p.x + BOX - 4].reshape(-1, 3).astype(np.float64)
        assert np.abs(got.mean(axis=0) - colour).max() <= tolerance, f"{where} {name}: {got.mean(axis=0).round(1)}"


def outside_boxes(rgb: np.ndarray) -> np.ndarray:
    mask = np.ones(rgb.shape[:2], bool)
    mask[: 8 + BOX + 4, : 8 + 4 * (BOX + 8) + 4] = False
    return rgb[mask]


@pytest.fixture(scope="module")
def bt709(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return render_tagged(tmp_path_factory.mktemp("bt709"), BT709_TAGS)


@pytest.fixture(scope="module")
def full_range(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return render_tagged(tmp_path_factory.mktemp("full"), f"{BT709_TAGS}:fullrange=on")


def test_bt709_clip_boxes_come_back_in_their_colour_and_the_tags_stay(bt709: Rendered) -> None:
    prepared = bt709.prepared
    assert (prepared.source.color_space, prepared.source.color_range) == ("1", "1")  # the fixture is tagged
    assert not prepared.mezzanine  # the source's packets are kept: the splice path
    first, stop = prepared.segment_frames(*SPAN)
    working = decoded(prepared.working_video_uri)
    assert colour_tags(working[0]) == (1, 1, 1, 1)
    for k, report in enumerate(bt709.reports):  # recipient 0 decodes the span, recipient 1 reads the frame cache
        assert report.mode == "splice" and report.reencoded_spans == [(first, stop)]
        with av.open(report.output_uri) as c:
            assert colour_tags(c.streams.video[0].codec_context) == (1, 1, 1, 1)  # the stream keeps its tags
        assert set(sps_colour(report.output_uri)) == {(1, 1, 1, 0)}  # and so does every SPS, the spans' included
        out = decoded(report.output_uri)
        assert len(out) == len(working) == 50
        for i in (first, first + 2, stop - 1):
            assert colour_tags(out[i]) == (1, 1, 1, 1), f"recipient {k} frame {i} lost its tags"
            rgb = frame_rgb(out[i], 709, False)
            assert_boxes(rgb, f"recipient {k} frame {i}")
            assert psnr(outside_boxes(rgb), outside_boxes(frame_rgb(working[i], 709, False))) >= 38
    # the preview's "after" frame (RGB given to the encoder) reads the tags too
    captured = bt709.captured[first + 2]
    assert isinstance(captured, np.ndarray)
    assert_boxes(captured, "captured frame")


def test_full_range_clip_boxes_come_back_in_their_colour(full_range: Rendered) -> None:
    prepared = full_range.prepared
    assert (prepared.source.color_space, prepared.source.color_range) == ("1", "2")  # the fixture is tagged
    first, stop = prepared.segment_frames(*SPAN)
    for k, report in enumerate(full_range.reports):
        out = decoded(report.output_uri)
        assert len(out) == 50
        for i in (first, first + 2, stop - 1):
            f = out[i]
            # whatever the output declares, the box read as declared is the patch's colour
            assert_boxes(frame_rgb(f, matrix_of(f.colorspace), f.color_range == 2), f"recipient {k} frame {i}")
    captured = full_range.captured[first + 2]
    assert isinstance(captured, np.ndarray)
    assert_boxes(captured, "captured frame")


def test_full_range_clip_keeps_its_tags_and_colours(full_range: Rendered) -> None:
    """Every output frame, read as the output declares, looks like the source read as it declares.
    Full-range H.264 (FFmpeg's yuvj420p) is kept and spliced like any other 4:2:0 stream."""
    assert not full_range.prepared.mezzanine
    assert [r.mode for r in full_range.reports] == ["splice", "splice"]
    source = decoded(full_range.src)
    report = full_range.reports[0]
    with av.open(report.output_uri) as c:
        colorspace, color_range, *_ = colour_tags(c.streams.video[0].codec_context)
    assert colorspace != 2 and color_range != 0  # declared, not left to the player's guess
    out = decoded(report.output_uri)
    for i, (s, o) in enumerate(zip(source, out)):
        expected = outside_boxes(frame_rgb(s, 709, True))
        got = outside_boxes(frame_rgb(o, matrix_of(o.colorspace), o.color_range == 2))
        assert psnr(expected, got) >= 35, f"frame {i}: {psnr(expected, got):.1f} dB"
