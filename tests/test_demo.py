"""`loom demo` makes videos that differ from its base recording only inside their segments."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from loom.demo import run_demo
from loom.media.probe import probe_video
from testkit.media import decode_audio, decode_rgb, psnr


def test_demo_videos_differ_from_base_only_inside_segments(tmp_path: Path, loom_home: Path) -> None:
    result = run_demo(tmp_path / "demo", rows=1)
    assert len(result.videos) == 1 and Path(result.contact_sheets[0]).exists()
    template = json.loads(result.template_path.read_text())
    base = decode_rgb(result.folder / "base.mp4")
    made = decode_rgb(result.videos[0])
    assert len(made) == len(base)
    fps = 25
    h, w = base[0].shape[:2]
    spans = [(round(s["start_time"] * fps), round(s["end_time"] * fps)) for s in template["visual_segments"]]
    keyframes = probe_video(str(result.folder / "base.mp4")).keyframes + [len(base)]
    touched = set()  # GOPs an edit touches are re-encoded; every other frame is the recording's own
    for first, stop in spans:
        gop_start = max(k for k in keyframes if k <= first)
        gop_stop = min(k for k in keyframes if k >= stop)
        touched |= set(range(gop_start, gop_stop))
    for i, (a, b) in enumerate(zip(base, made)):
        if any(first <= i < stop for first, stop in spans):
            continue
        if i in touched:
            assert psnr(a, b) >= 42, f"frame {i} outside the segments lost quality"
        else:
            assert np.array_equal(a, b), f"frame {i} outside every edited GOP changed"
    assert len(touched) < len(base)
    # inside the spans, the page away from the name plate and logo is untouched (camera side)
    mid = (spans[0][0] + spans[0][1]) // 2
    camera = slice(0, int(0.4 * w))
    assert psnr(base[mid][:, camera], made[mid][:, camera]) >= 40  # re-encoded, but nothing drawn there
    assert np.abs(base[mid].astype(int) - made[mid].astype(int)).max() > 60  # the plate/logo did change
    # the voice window's audio is new, the audio after it is the recording's
    voice = template["voice_segments"][0]
    a, b = decode_audio(result.folder / "base.mp4"), decode_audio(result.videos[0])
    assert abs(a.shape[1] - b.shape[1]) < 48000 * 0.05
    sr = 48000
    inside = slice(int((voice["start_time"] + 0.3) * sr), int((voice["end_time"] - 0.3) * sr))
    after = slice(int((voice["end_time"] + 0.5) * sr), int((voice["end_time"] + 3.0) * sr))
    assert np.abs(a[:, inside] - b[:, inside]).mean() > 0.005
    assert np.abs(a[:, after] - b[:, after]).max() < 0.05
