"""Small pieces of the splice: span planning, avcC records, crossfade gains."""

from __future__ import annotations

import numpy as np

from loom.media import h264
from loom.media.audio_mix import equal_power_fades
from loom.media.cut_plan import edited_spans, gop_regions


def test_edited_spans_merge_overlaps_and_clip_to_the_video() -> None:
    assert edited_spans([(10, 20), (15, 30), (40, 45), (-3, 2), (70, 90)], 80) == [(0, 2), (10, 30), (40, 45), (70, 80)]
    assert edited_spans([(5, 5)], 80) == []
    assert edited_spans([(10, 20), (20, 30)], 80) == [(10, 30)]  # touching ranges are one span
    assert edited_spans([(20, 30), (0, 10), (10, 20)], 80) == [(0, 30)]


def test_gop_regions_widen_to_idr_frames_and_merge() -> None:
    keys = [0, 25, 50, 75]
    assert gop_regions([(30, 40)], keys, 100) == [(25, 50)]
    assert gop_regions([(25, 50)], keys, 100) == [(25, 50)]  # already aligned: exactly the span
    assert gop_regions([(30, 40), (45, 60)], keys, 100) == [(25, 75)]
    assert gop_regions([(10, 20), (80, 90)], keys, 100) == [(0, 25), (75, 100)]


def test_avcc_round_trip_and_parameter_set_ids() -> None:
    sps = bytes.fromhex("6764000dacb40a0fd0800000030080000019078a1550")
    pps = bytes.fromhex("68ef3cb0")
    cfg = h264.AvcConfig(profile=0x64, compat=0, level=13, length_size=4, sps=[sps], pps=[pps], tail=b"\xfd\xf8\xf8\x00")
    again = h264.AvcConfig.parse(cfg.build())
    assert again == cfg and again.sps_ids() == {0} and again.pps_ids() == {0}
    nals = [sps, pps, b"\x65\x88\x84"]
    annexb = b"".join(b"\x00\x00\x00\x01" + n for n in nals)
    assert h264.split_annexb(annexb) == nals
    assert h264.split_length_prefixed(h264.join_length_prefixed(nals)) == nals
    assert h264.is_idr_packet(h264.join_length_prefixed(nals)) and not h264.is_idr_packet(h264.join_length_prefixed([b"\x41\x9a"]))


def test_equal_power_fades_keep_constant_power_and_reach_full_insert() -> None:
    g_in, g_orig = equal_power_fades(4800, 960)
    assert np.allclose(g_in**2 + g_orig**2, 1.0, atol=1e-6)
    assert g_in[0] < 0.01 and g_in[-1] < 0.01 and np.all(g_in[960:-960] == 1.0) and np.all(g_orig[960:-960] == 0.0)


def test_patches_on_yuv_planes_touch_only_their_pixels() -> None:
    import av

    from loom.media.overlay import patch_yuv420p, plane_views
    from loom.media.patches import Patch, apply_patches

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    before = frame.to_ndarray().copy()
    rgba = np.zeros((30, 41, 4), np.uint8)
    rgba[..., :3] = (200, 30, 60)
    rgba[5:25, 5:35, 3] = 255  # opaque core, transparent rim
    patch = Patch(x=33, y=47, rgba=rgba)
    patch_yuv420p(*plane_views(frame), [patch])
    after = frame.to_ndarray()
    y0, y1 = before[:120].astype(int), after[:120].astype(int)
    changed = np.argwhere(y0 != y1)
    assert changed.size and changed[:, 0].min() >= 47 + 5 and changed[:, 0].max() < 47 + 25
    assert changed[:, 1].min() >= 33 + 5 and changed[:, 1].max() < 33 + 35
    # the colour under the opaque core matches compositing in RGB and converting with swscale
    expected = apply_patches(av.VideoFrame.from_ndarray(before, format="yuv420p").to_ndarray(format="rgb24"), [patch])
    got = frame.to_ndarray(format="rgb24")
    core = (slice(47 + 7, 47 + 23), slice(33 + 7, 33 + 33))
    assert np.abs(got[core].astype(int) - expected[core].astype(int)).max() <= 4
    assert np.abs(got[core].astype(int) - np.array([200, 30, 60])).max() <= 6
