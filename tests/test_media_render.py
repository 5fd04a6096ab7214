"""render_recipient: the smart cut keeps every untouched frame and sample, edits only the spans."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import pytest
from scipy.io import wavfile

from loom.edits import AudioInsert, PatchSetRef
from loom.media.audio_mix import CROSSFADE_SECONDS
from loom.media.patches import Patch, PatchSet
from loom.media.prepare import prepare_media
from loom.media.render import RenderReport, render_recipient
from loom.prepared import PreparedTemplate
from loom.template import Template
from testkit.media import decode_audio, decode_rgb, make_clip, psnr

BOX = (40, 60, 80, 50)  # x, y, w, h of the edited box
SPAN = (1.2, 1.8)  # seconds: the edited span
WINDOW = (0.8, 1.6)  # seconds: the voice window


def prepared_for(src: Path, root: Path, cuts: list[float]) -> PreparedTemplate:
    pm = prepare_media(str(src), cuts, str(root))
    template = Template(id="t1", base_video_path=str(src))
    return PreparedTemplate(template=template, version="v1", root=str(root), **pm.model_dump())


def box_patches(prepared: PreparedTemplate, path: Path, colour: tuple[int, int, int], kind: str = "visual") -> PatchSetRef:
    first, stop = prepared.segment_frames(*SPAN)
    x, y, w, h = BOX
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., :3] = colour
    rgba[..., 3] = 255
    ps = PatchSet()
    for f in range(first, stop):
        ps.add(f, Patch(x=x + (f - first), y=y, rgba=rgba))  # the box moves, like a tracked overlay
    ps.save(str(path))
    return PatchSetRef(segment_id=f"s-{kind}", kind=kind, uri=str(path), first_frame=first, stop_frame=stop)


def tone_insert(path: Path, hz: float, rate: int = 24000) -> AudioInsert:
    """A mono insert at another rate than the recording's: the mix must resample and spread it."""
    n = round((WINDOW[1] - WINDOW[0]) * rate)
    t = np.arange(n) / rate
    wavfile.write(str(path), rate, (0.4 * np.sin(2 * np.pi * hz * t) * 32767).astype(np.int16))
    return AudioInsert(segment_id="v1", uri=str(path), start=WINDOW[0], end=WINDOW[1], sample_rate=rate)


def gops_touched(prepared: PreparedTemplate, cuts: list[float]) -> set[int]:
    """Frames of the source's GOPs that hold a cut frame which is not already a keyframe."""
    keys, n = prepared.source.keyframes, prepared.source.frame_count
    touched: set[int] = set()
    for t in cuts:
        c = round(t * 25)
        if 0 < c < n and c not in keys:
            k0 = max(k for k in keys if k <= c)
            k1 = min((k for k in keys if k > c), default=n)
            touched |= set(range(k0, k1))
    return touched


def outside_box(frame: np.ndarray, index: int, first: int) -> np.ndarray:
    mask = np.ones(frame.shape[:2], bool)
    x, y, w, h = BOX
    dx = index - first
    mask[max(0, y - 2) : y + h + 2, max(0, x + dx - 2) : x + dx + w + 2] = False
    return frame[mask]


def video_packets(path: str) -> dict[int, bytes]:
    """Packet bytes keyed by presentation timestamp."""
    with av.open(path) as c:
        return {p.pts: bytes(p) for p in c.demux(video=0) if p.size}


def decode_errors(path: str) -> str:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", path, "-f", "null", "-"]
    return subprocess.run(cmd, capture_output=True, text=True).stderr.strip()


@pytest.fixture(scope="module")
def h264_case(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An H.264 recording with B-frames and 0.8 s GOPs, and two recipients rendered from it."""
    tmp = tmp_path_factory.mktemp("h264")
    src = make_clip(tmp / "rec.mp4", seconds=3.0, gop=20, bframes=2)
    prepared = prepared_for(src, tmp / "prep", [*SPAN, *WINDOW])
    assert not prepared.mezzanine
    a = render_recipient(prepared, [tone_insert(tmp / "a.wav", 1000)], [box_patches(prepared, tmp / "a.npz", (255, 0, 0))], str(tmp / "a.mp4"))
    b = render_recipient(prepared, [tone_insert(tmp / "b.wav", 700)], [box_patches(prepared, tmp / "b.npz", (0, 0, 255))], str(tmp / "b.mp4"))
    return {"src": src, "prepared": prepared, "a": a, "b": b, "tmp": tmp}


def test_splice_reencodes_exactly_the_span(h264_case: dict) -> None:
    prepared, report = h264_case["prepared"], h264_case["a"]
    first, stop = prepared.segment_frames(*SPAN)
    assert report.mode == "splice" and report.fallback_reason is None
    # the cut frames fell inside GOPs: prepare planted IDRs there, so only the span is re-encoded
    assert {first, stop} - set(prepared.source.keyframes) and {first, stop} <= set(prepared.video.keyframes)
    assert report.edited_spans == report.reencoded_spans == [(first, stop)]
    assert report.reencoded_frames == stop - first and report.copied_packets == 75 - (stop - first) and report.frames == 75
    assert decode_errors(report.output_uri) == ""
    # the spans reuse the parameter sets planted at prepare time: the output's avcC is the working video's
    with av.open(prepared.working_video_uri) as w, av.open(report.output_uri) as o:
        assert o.streams.video[0].codec_context.extradata == w.streams.video[0].codec_context.extradata
        assert o.streams.video[0].codec_context.profile == w.streams.video[0].codec_context.profile


def test_frames_outside_edited_gops_are_bit_identical(h264_case: dict) -> None:
    prepared = h264_case["prepared"]
    original = decode_rgb(h264_case["src"])
    out = decode_rgb(h264_case["a"].output_uri)
    first, stop = prepared.segment_frames(*SPAN)
    touched = gops_touched(prepared, [*SPAN, *WINDOW])
    assert touched and len(touched) < 75
    assert len(out) == len(original) == 75
    for i, (o, e) in enumerate(zip(original, out)):
        if i not in touched:
            assert np.array_equal(o, e), f"frame {i} changed outside the GOPs the cuts touch"
        elif first <= i < stop:
            assert psnr(outside_box(o, i, first), outside_box(e, i, first)) >= 40, f"frame {i} outside the box"
            x, y, w, h = BOX
            inner = e[y + 4 : y + h - 4, x + (i - first) + 4 : x + (i - first) + w - 4]
            assert inner[..., 0].mean() > 200 and inner[..., 2].mean() < 60  # the red patch is there
        else:
            assert psnr(o, e) >= 42, f"frame {i} of a GOP the cuts touch lost quality"


def test_source_packets_are_kept_outside_the_gops_the_cuts_touch(h264_case: dict) -> None:
    prepared = h264_case["prepared"]
    src, out = video_packets(str(h264_case["src"])), video_packets(h264_case["a"].output_uri)
    touched = gops_touched(prepared, [*SPAN, *WINDOW])
    with av.open(str(h264_case["src"])) as c:
        tb, rate = c.streams.video[0].time_base, c.streams.video[0].average_rate
    assert src.keys() == out.keys()
    kept = [pts for pts in src if round(pts * tb * rate) not in touched]
    assert len(kept) == 75 - len(touched)
    assert all(src[pts] == out[pts] for pts in kept)


def test_timing_frame_count_and_audio_length_are_the_originals(h264_case: dict) -> None:
    src, out = str(h264_case["src"]), h264_case["a"].output_uri
    with av.open(src) as a, av.open(out) as b:
        va, vb = a.streams.video[0], b.streams.video[0]
        assert vb.average_rate == va.average_rate
        pts_a = sorted(p.pts * va.time_base for p in a.demux(va) if p.size)
        pts_b = sorted(p.pts * vb.time_base for p in b.demux(vb) if p.size)
    assert pts_a == pts_b  # same display times: nothing dropped, duplicated or shifted
    assert len(set(np.diff([float(t) for t in pts_b]).round(6))) == 1
    assert decode_audio(src).shape == decode_audio(out).shape
    with open(out, "rb") as handle:  # faststart: the moov box comes before the media data
        head = handle.read(1 << 16)
    assert head.find(b"moov") < head.find(b"mdat")


def test_two_recipients_share_every_packet_outside_the_span(h264_case: dict) -> None:
    prepared = h264_case["prepared"]
    first, stop = prepared.segment_frames(*SPAN)
    pa, pb = video_packets(h264_case["a"].output_uri), video_packets(h264_case["b"].output_uri)
    working = video_packets(prepared.working_video_uri)
    with av.open(prepared.working_video_uri) as c:
        tb, rate = c.streams.video[0].time_base, c.streams.video[0].average_rate
    assert pa.keys() == pb.keys() == working.keys()
    for pts in working:
        inside = first <= round(pts * tb * rate) < stop
        if not inside:
            assert pa[pts] == pb[pts] == working[pts]
        else:
            assert pa[pts] != pb[pts]


def test_audio_is_original_outside_the_window_and_the_insert_inside(h264_case: dict) -> None:
    rate = 48000
    original = decode_audio(h264_case["src"])[0]
    out = decode_audio(h264_case["a"].output_uri)[0]
    s0, s1 = round(WINDOW[0] * rate), round(WINDOW[1] * rate)
    margin = 2048  # AAC frames straddling the window edges
    for lo, hi in ((2048, s0 - margin), (s1 + margin, len(original) - 2048)):
        ref, got = original[lo:hi], out[lo:hi]
        snr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - got) ** 2))
        assert snr > 20, f"audio outside the window differs (SNR {snr:.1f} dB)"
        assert np.corrcoef(ref, got)[0, 1] > 0.99
    inside = out[s0 + 2400 : s1 - 2400]
    spectrum = np.abs(np.fft.rfft(inside))
    peak_hz = np.argmax(spectrum) * rate / len(inside)
    assert abs(peak_hz - 1000) < 5  # the insert's tone, not the recording's 440 Hz


def test_both_seams_are_crossfaded_in_the_encoded_output(h264_case: dict) -> None:
    """An insert far from zero at both edges (the recording crosses zero there): a hard cut would
    step by ~0.6 in one sample; the equal-power crossfade keeps each seam's largest step near the
    reference mix's own, after AAC, at the start and at the end."""
    tmp, prepared = h264_case["tmp"], h264_case["prepared"]
    rate = 48000
    s0, s1 = round(WINDOW[0] * rate), round(WINDOW[1] * rate)
    t = np.arange(s1 - s0) / rate
    swell = 0.6 * np.cos(2 * np.pi * 5 * t) + 0.05 * np.sin(2 * np.pi * 1000 * t)  # +0.6 at both edges
    wavfile.write(str(tmp / "swell.wav"), rate, (np.stack([swell, swell], 1) * 32767).round().astype(np.int16))
    insert = AudioInsert(segment_id="v1", uri=str(tmp / "swell.wav"), start=WINDOW[0], end=WINDOW[1], sample_rate=rate)
    report = render_recipient(prepared, [insert], [], str(tmp / "swell.mp4"))
    out = decode_audio(report.output_uri)[0]
    original = wavfile.read(prepared.audio_uri)[1][:, 0] / 32768.0
    fade = round(CROSSFADE_SECONDS * rate)
    theta = np.full(s1 - s0, np.pi / 2)
    ramp = np.pi / 2 * (np.arange(fade) + 1) / (fade + 1)
    theta[:fade], theta[-fade:] = ramp, ramp[::-1]
    want = original.copy()
    want[s0:s1] = original[s0:s1] * np.cos(theta) + swell * np.sin(theta)
    for edge in (s0, s1):
        near = slice(edge - 2 * fade, edge + 2 * fade)
        assert abs(want[edge - 1] - want[edge]) < 0.05 and abs(swell[0]) > 0.5  # the fixture is far from zero
        real = np.abs(np.diff(want[near])).max()
        got = np.abs(np.diff(out[near])).max()
        assert 0.8 * real <= got <= 1.25 * real, (edge, got, real)
        assert np.abs(out[near] - want[near]).max() < 0.04, edge  # the crossfade's shape, within AAC's error


def test_no_patch_sets_copies_every_video_packet(h264_case: dict) -> None:
    tmp = h264_case["tmp"]
    report = render_recipient(h264_case["prepared"], [tone_insert(tmp / "c.wav", 900)], [], str(tmp / "c.mp4"))
    assert report.mode == "splice" and report.reencoded_frames == 0 and report.copied_packets == 75
    assert video_packets(report.output_uri) == video_packets(h264_case["prepared"].working_video_uri)


def test_lipsync_patches_composite_under_visual_patches(tmp_path: Path, h264_case: dict) -> None:
    prepared = h264_case["prepared"]
    lip = box_patches(prepared, tmp_path / "lip.npz", (0, 255, 0), kind="lipsync")
    vis = box_patches(prepared, tmp_path / "vis.npz", (255, 0, 0), kind="visual")
    report = render_recipient(prepared, [], [vis, lip], str(tmp_path / "o.mp4"))  # order given: visual first
    first, _ = prepared.segment_frames(*SPAN)
    frame = decode_rgb(report.output_uri)[first + 2]
    x, y, w, h = BOX
    inner = frame[y + 4 : y + h - 4, x + 6 : x + w - 4]
    assert inner[..., 0].mean() > 200 and inner[..., 1].mean() < 60  # visual (red) on top of lip-sync (green)


@pytest.fixture(scope="module")
def avi_case(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("avi")
    src = make_clip(tmp / "rec.avi", seconds=3.0, codec="mpeg4", audio_codec="ac3", gop=250)
    prepared = prepared_for(src, tmp / "prep", [*SPAN, *WINDOW])
    a = render_recipient(prepared, [tone_insert(tmp / "a.wav", 1000)], [box_patches(prepared, tmp / "a.npz", (255, 0, 0))], str(tmp / "a.mp4"))
    b = render_recipient(prepared, [tone_insert(tmp / "b.wav", 700)], [box_patches(prepared, tmp / "b.npz", (0, 0, 255))], str(tmp / "b.mp4"))
    return {"src": src, "prepared": prepared, "a": a, "b": b}


def test_avi_mpeg4_ac3_personalizes_through_the_mezzanine(avi_case: dict) -> None:
    prepared, report = avi_case["prepared"], avi_case["a"]
    first, stop = prepared.segment_frames(*SPAN)
    assert prepared.mezzanine and report.mode == "splice"
    assert report.reencoded_spans == [(first, stop)]  # keyframes were placed at the cuts: only the span
    assert decode_errors(report.output_uri) == ""
    working, out, original = decode_rgb(prepared.working_video_uri), decode_rgb(report.output_uri), decode_rgb(avi_case["src"])
    assert len(out) == len(working) == len(original) == 75
    for i in range(75):
        if first <= i < stop:
            assert psnr(outside_box(original[i], i, first), outside_box(out[i], i, first)) >= 40
        else:
            assert np.array_equal(working[i], out[i])
            assert psnr(original[i], out[i]) >= 42
    assert decode_audio(report.output_uri).shape[1] == pytest.approx(decode_audio(avi_case["src"]).shape[1], abs=2048)


def test_mezzanine_recipients_share_every_packet_outside_the_span(avi_case: dict) -> None:
    prepared = avi_case["prepared"]
    first, stop = prepared.segment_frames(*SPAN)
    pa, pb = video_packets(avi_case["a"].output_uri), video_packets(avi_case["b"].output_uri)
    with av.open(avi_case["a"].output_uri) as c:
        tb, rate = c.streams.video[0].time_base, c.streams.video[0].average_rate
    assert pa.keys() == pb.keys()
    for pts in pa:
        assert (pa[pts] == pb[pts]) != (first <= round(pts * tb * rate) < stop)


def test_full_reencode_fallback_when_the_working_video_cannot_be_spliced(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "rec.avi", seconds=1.0, size=(160, 120), codec="mpeg4", audio_codec="ac3")
    prepared = prepared_for(src, tmp_path / "prep", [0.4])
    # a working video that is not H.264 (as if prepare had kept the AVI): splicing is impossible
    prepared = prepared.model_copy(update={"working_video_uri": str(src), "video": prepared.source})
    ps = PatchSet()
    rgba = np.full((20, 30, 4), 255, np.uint8)
    ps.add(10, Patch(x=10, y=10, rgba=rgba))
    ps.save(str(tmp_path / "p.npz"))
    ref = PatchSetRef(segment_id="v", kind="visual", uri=str(tmp_path / "p.npz"), first_frame=10, stop_frame=11)
    report = render_recipient(prepared, [], [ref], str(tmp_path / "o.mp4"))
    assert report.mode == "full" and "mpeg4" in report.fallback_reason
    out, original = decode_rgb(report.output_uri), decode_rgb(src)
    assert len(out) == len(original) == report.frames == 25
    assert out[10][15:25, 15:35].min() > 230  # the white patch
    assert psnr(original[3], out[3]) > 38
    assert decode_errors(report.output_uri) == ""


def test_spans_at_the_start_and_the_end_of_the_recording(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "rec.mp4", seconds=2.0, size=(160, 120), gop=15, bframes=3)
    prepared = prepared_for(src, tmp_path / "prep", [0.0, 0.3, 1.5, 2.0])
    refs = []
    for name, (first, stop) in {"head": (0, 8), "tail": (38, 50)}.items():
        ps = PatchSet()
        for f in range(first, stop):
            ps.add(f, Patch(x=5, y=5, rgba=np.full((10, 10, 4), 255, np.uint8)))
        ps.save(str(tmp_path / f"{name}.npz"))
        refs.append(PatchSetRef(segment_id=name, kind="visual", uri=str(tmp_path / f"{name}.npz"), first_frame=first, stop_frame=stop))
    report = render_recipient(prepared, [], refs, str(tmp_path / "o.mp4"))
    assert report.mode == "splice" and report.reencoded_spans == [(0, 8), (38, 50)]
    assert decode_errors(report.output_uri) == ""
    working, out = decode_rgb(prepared.working_video_uri), decode_rgb(report.output_uri)
    assert len(out) == len(working) == 50
    for i in range(50):
        if 0 <= i < 8 or 38 <= i < 50:
            assert out[i][6:14, 6:14].min() > 230
            assert psnr(working[i][30:], out[i][30:]) >= 40
        else:
            assert np.array_equal(working[i], out[i])


def test_audio_packets_outside_the_window_are_the_templates_aac(h264_case: dict) -> None:
    from loom.media.aac import aac_track_uri

    track = aac_track_uri(h264_case["prepared"].audio_uri)
    with av.open(track) as t, av.open(h264_case["a"].output_uri) as o, av.open(h264_case["b"].output_uri) as o2:
        template = {p.pts: bytes(p) for p in t.demux(audio=0) if p.size}
        a = {p.pts: bytes(p) for p in o.demux(audio=0) if p.size}
        b = {p.pts: bytes(p) for p in o2.demux(audio=0) if p.size}
    assert template.keys() == a.keys() == b.keys()
    s0, s1 = round(WINDOW[0] * 48000), round(WINDOW[1] * 48000)
    outside = [pts for pts in template if pts + 1024 < s0 - 2048 or pts > s1 + 2048]
    inside = [pts for pts in template if s0 + 1024 <= pts < s1 - 2048]
    assert len(outside) > 60 and inside
    assert all(template[p] == a[p] == b[p] for p in outside)
    assert all(a[p] != b[p] for p in inside)


def test_without_a_template_aac_track_the_whole_mix_is_encoded_once(tmp_path: Path) -> None:
    from loom.media.aac import aac_track_uri

    src = make_clip(tmp_path / "rec.mp4", seconds=2.0, size=(160, 120), gop=25)
    prepared = prepared_for(src, tmp_path / "prep", [])
    Path(aac_track_uri(prepared.audio_uri)).unlink()  # as an older prepared template would be
    report = render_recipient(prepared, [tone_insert(tmp_path / "i.wav", 1000)], [], str(tmp_path / "o.mp4"))
    assert report.mode == "splice" and report.copied_packets == 50
    original, out = decode_audio(src)[0], decode_audio(report.output_uri)[0]
    assert original.shape == out.shape
    lo, hi = 2048, round(WINDOW[0] * 48000) - 2048
    assert np.corrcoef(original[lo:hi], out[lo:hi])[0, 1] > 0.99


def test_xvid_avi_with_packed_b_frames_and_ac3_keeps_every_frame_in_sync(tmp_path: Path) -> None:
    """An AVI as Xvid writes it: B-frames packed with their P-frame, guessed timestamps out of order."""
    src = tmp_path / "xvid.avi"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error",
           "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=2",
           "-f", "lavfi", "-i", "sine=frequency=440:duration=2:sample_rate=48000",
           "-c:v", "libxvid", "-bf", "2", "-c:a", "ac3", "-ac", "2", str(src)]
    subprocess.run(cmd, check=True, capture_output=True)
    prepared = prepared_for(src, tmp_path / "prep", [*SPAN, *WINDOW])
    assert prepared.mezzanine and prepared.source.audio_codec == "ac3"
    report = render_recipient(prepared, [tone_insert(tmp_path / "a.wav", 1000)], [], str(tmp_path / "o.mp4"))
    assert decode_errors(report.output_uri) == ""
    original, out = decode_rgb(src), decode_rgb(report.output_uri)
    assert len(out) == len(original)
    assert min(psnr(a, b) for a, b in zip(original, out)) >= 40  # same frames, same order
    # audio not shifted against the original: the tone's phase lines up before the window
    a, b = decode_audio(src)[0], decode_audio(report.output_uri)[0]
    lo, hi = 4800, round(WINDOW[0] * 48000) - 4800
    assert np.corrcoef(a[lo:hi], b[lo:hi])[0, 1] > 0.99
