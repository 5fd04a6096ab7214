"""prepare_media: which recordings are kept, and the mezzanine made for the others."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from scipy.io import wavfile

from loom.media.prepare import prepare_media
from loom.media.probe import probe_video
from testkit.media import decode_rgb, make_clip, psnr


def luma_frames(path: str | Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray") for f in c.decode(video=0)]


def test_h264_mp4_is_kept_and_audio_decoded_once(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", seconds=2.0, gop=10)
    pm = prepare_media(str(src), [0.4, 1.2], str(tmp_path / "prep"))  # frames 10 and 30: keyframes already
    assert pm.mezzanine is False and pm.mezzanine_reason is None
    assert pm.working_video_uri == str(src)
    assert pm.video.frame_count == 50 and pm.video.keyframes[:3] == [0, 10, 20]
    rate, pcm = wavfile.read(pm.audio_uri)
    assert (rate, pcm.shape[1]) == (pm.audio_sample_rate, pm.audio_channels) == (48000, 2)
    assert abs(pcm.shape[0] / rate - 2.0) < 0.03  # the original's length (AAC frames round it up)
    assert np.abs(pcm).max() > 3000  # the tone, not silence


def test_h264_cut_inside_a_gop_gets_a_planted_keyframe(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", seconds=2.0, gop=10, bframes=2)
    pm = prepare_media(str(src), [0.5, 1.0], str(tmp_path / "prep"))  # frames 12 and 25
    assert pm.mezzanine is False
    assert pm.working_video_uri == str(tmp_path / "prep" / "working.mp4")
    assert {12, 25} <= set(pm.video.keyframes) and pm.video.frame_count == 50
    touched = set(range(10, 20)) | set(range(20, 30))
    src_rgb, work_rgb = decode_rgb(src), decode_rgb(pm.working_video_uri)
    src_y, work_y = luma_frames(src), luma_frames(pm.working_video_uri)
    for i in range(50):
        if i in touched:
            assert psnr(src_y[i], work_y[i]) >= 45
        else:
            assert np.array_equal(src_rgb[i], work_rgb[i])


def test_avi_mpeg4_ac3_gets_lossless_mezzanine_with_keyframes_at_cuts(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.avi", seconds=2.0, codec="mpeg4", audio_codec="ac3", gop=50)
    assert probe_video(str(src)).audio_codec == "ac3"
    cuts = [0.52, 1.23]
    pm = prepare_media(str(src), cuts, str(tmp_path / "prep"))
    assert pm.mezzanine and "avi" in pm.mezzanine_reason
    assert Path(pm.working_video_uri).parent == tmp_path / "prep"
    v = pm.video
    assert (v.codec, v.pix_fmt, v.container.startswith("mov"), v.constant_frame_rate) == ("h264", "yuv420p", True, True)
    assert v.frame_count == 50 and v.fps == "25/1"
    for t in cuts:  # a keyframe on the very frame frame_span() gives each cut
        assert v.frame_span(t, t + 0.2)[0] in v.keyframes
    src_y, mez_y = luma_frames(src), luma_frames(pm.working_video_uri)
    assert len(src_y) == len(mez_y)
    assert min(psnr(a, b) for a, b in zip(src_y, mez_y)) >= 45.0
    rate, pcm = wavfile.read(pm.audio_uri)
    assert abs(pcm.shape[0] / rate - 2.0) < 0.05


def test_vfr_source_becomes_cfr_mezzanine(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "vfr.mp4", seconds=2.0, vfr=True)
    assert probe_video(str(src)).constant_frame_rate is False
    pm = prepare_media(str(src), [1.0], str(tmp_path / "prep"))
    assert pm.mezzanine and pm.mezzanine_reason == "variable frame rate"
    assert pm.video.constant_frame_rate and Fraction(pm.video.fps) == 25
    with av.open(pm.working_video_uri) as c:
        pts = [p.pts for p in c.demux(video=0) if p.size]
    steps = np.diff(sorted(pts))
    assert len(set(steps.tolist())) == 1  # one timestamp step: constant frame rate
    assert abs(pm.video.duration - pm.source.duration) <= 1 / 25 + 1e-6


def test_rotated_source_is_turned_upright(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "rot.mp4", seconds=1.0, size=(160, 120), rotation=90)
    pm = prepare_media(str(src), [0.4], str(tmp_path / "prep"))
    assert pm.mezzanine and "rotation" in pm.mezzanine_reason
    assert (pm.video.width, pm.video.height, pm.video.rotation) == (120, 160, 0)
    raw = decode_rgb(src)[5]
    upright = decode_rgb(pm.working_video_uri)[5]
    # display rotation 90 is counter-clockwise
    assert psnr(np.rot90(raw, 1), upright) > 35


def test_odd_size_is_padded_to_even(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "odd.mp4", seconds=1.0, size=(161, 121))
    pm = prepare_media(str(src), [0.5], str(tmp_path / "prep"))
    assert pm.mezzanine and "odd" in pm.mezzanine_reason
    assert (pm.video.width, pm.video.height) == (162, 122)
    src_y, mez_y = luma_frames(src), luma_frames(pm.working_video_uri)
    assert len(src_y) == len(mez_y)
    assert min(psnr(a, b[:121, :161]) for a, b in zip(src_y, mez_y)) >= 45.0
    edge, added = mez_y[3][:121, 160].astype(int), mez_y[3][:121, 161].astype(int)
    assert np.abs(edge - added).mean() < 2  # the added column repeats the edge (not black)


@pytest.mark.parametrize(
    ("name", "codec", "reason"),
    [("hevc.mkv", "libx265", "matroska"), ("vp9.webm", "libvpx-vp9", "webm"), ("prores.mov", "prores_ks", "prores")],
)
def test_other_codecs_go_via_mezzanine(tmp_path: Path, name: str, codec: str, reason: str) -> None:
    src = make_clip(tmp_path / name, seconds=1.0, size=(160, 120), codec=codec)
    pm = prepare_media(str(src), [0.4], str(tmp_path / "prep"))
    assert pm.mezzanine and reason in pm.mezzanine_reason
    assert pm.video.codec == "h264" and pm.video.frame_count == 25
    src_y, mez_y = luma_frames(src), luma_frames(pm.working_video_uri)
    assert min(psnr(a, b) for a, b in zip(src_y, mez_y)) >= 45.0


def test_no_audio_track_gives_silent_wav_of_video_length(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "mute.mp4", seconds=1.6, audio=False)
    pm = prepare_media(str(src), [], str(tmp_path / "prep"))
    assert pm.mezzanine is False
    rate, pcm = wavfile.read(pm.audio_uri)
    assert pcm.shape[0] == round(1.6 * rate) and not pcm.any()
