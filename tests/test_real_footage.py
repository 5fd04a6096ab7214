"""A corpus of real-world recording shapes, cut on the fly from real film footage (testkit/footage.py).

Each shape is personalized with one text box; the video must decode without an error, keep the
duration (within a frame), the displayed size and orientation, the HDR tags, and every frame outside
the edit; the damaged ones personalize too, and their QA record says what was concealed.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import pytest

from loom import pipeline
from loom.template import parse_template
from testkit.footage import SHAPES, make_shape
from testkit.media import psnr
from tests.test_lipsync_fixtures import random_wav2lip

EDIT = (0.45, 0.95)  # seconds the text box is shown
BOX = {"x": 0.05, "y": 0.06, "width": 0.5, "height": 0.16}
# The slow ones (1080p60; a full HEVC and ProRes decode) run in the end-to-end tier.
HEAVY = {"1080p60-h264-open-gop", "prores-pcm", "hevc-10bit-hlg"}
DAMAGED = {"truncated-mp4": ("video", "truncated"), "mpeg4-ac3-avi-damaged-audio": ("audio", "corrupt"),
           "h264-lost-packet": ("video", "undecodable")}


def _template(video: Path) -> dict:
    return {
        "id": f"real-{video.stem}",
        "base_video_path": str(video),
        "voice_segments": [],
        "visual_segments": [{"id": "name", "segment_type": "text", "start_time": EDIT[0], "end_time": EDIT[1],
                             "placeholder_key": "company", **BOX}],
    }


def decode_errors(uri: str) -> str:
    """What FFmpeg says while decoding every stream of ``uri`` (empty: it decodes cleanly)."""
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", uri, "-f", "null", "-"],
                            capture_output=True, text=True)
    return result.stderr.strip() + ("" if result.returncode == 0 else f" (exit {result.returncode})")


def shown_luma(uri: str, fps: Fraction, size: tuple[int, int]) -> np.ndarray:
    """Every frame as a player shows it (rotation applied, FFmpeg's own concealment of damage),
    sampled at ``fps`` from the first frame, as 8-bit luma: FFmpeg's reading, not the engine's."""
    w, h = size
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "quiet", "-i", uri, "-map", "0:v:0",
           "-vf", f"setpts=PTS-STARTPTS,fps={fps.numerator}/{fps.denominator},format=gray",
           "-f", "rawvideo", "-"]
    raw = subprocess.run(cmd, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w)


def video_tags(uri: str) -> dict[str, object]:
    with av.open(uri) as c:
        stream = c.streams.video[0]
        cc = stream.codec_context
        frame = next(c.decode(stream))
        rotation = int(round(float(getattr(frame, "rotation", 0) or 0))) % 360
        w, h = (cc.height, cc.width) if rotation in (90, 270) else (cc.width, cc.height)
        return {"size": (w, h), "primaries": cc.color_primaries, "trc": cc.color_trc, "matrix": cc.colorspace}


@pytest.mark.parametrize("shape", [pytest.param(s, marks=pytest.mark.e2e) if s in HEAVY else s for s in SHAPES])
def test_real_shape_personalizes_and_keeps_what_is_outside_the_edit(shape: str, tmp_path: Path, loom_home: Path) -> None:
    source = make_shape(shape, tmp_path / "in")
    template = parse_template(_template(source))
    result = pipeline.personalize(template, {"company": "Acme"}, str(tmp_path / "out.mp4"))
    out = result.output_uri

    assert decode_errors(out) == ""
    before, after = video_tags(str(source)), video_tags(out)
    assert after["size"] == before["size"]  # displayed size and orientation
    if before["trc"] not in (None, 2):  # tagged (HLG here): the tags survive
        assert (after["primaries"], after["trc"], after["matrix"]) == (before["primaries"], before["trc"], before["matrix"])

    with av.open(out) as c:
        fps = Fraction(c.streams.video[0].average_rate)
    shown, made = shown_luma(str(source), fps, before["size"]), shown_luma(out, fps, after["size"])
    assert abs(len(made) - len(shown)) <= 1, (len(made), len(shown))

    first, stop = round(EDIT[0] * fps), round(EDIT[1] * fps)
    for i in range(min(len(made), len(shown))):
        if first <= i < stop:
            continue
        assert psnr(shown[i], made[i]) >= 38, f"frame {i} outside the edit: {psnr(shown[i], made[i]):.1f} dB"
    w, h = before["size"]
    box = (slice(int(BOX["y"] * h), int((BOX["y"] + BOX["height"]) * h)), slice(int(BOX["x"] * w), int((BOX["x"] + BOX["width"]) * w)))
    mid = (first + stop) // 2
    assert psnr(shown[mid][box], made[mid][box]) < 30  # the edit is there

    if shape in DAMAGED:
        stream, kind = DAMAGED[shape]
        assert any(c.stream == stream and c.kind == kind and c.count >= 1 for c in result.concealed), result.concealed
        assert any(w.startswith("concealed:") for w in result.warnings)
    else:
        assert result.concealed == []


def test_cli_personalizes_a_damaged_recording_and_records_what_was_concealed(tmp_path: Path) -> None:
    """`loom personalize` on the film's own codecs with an incomplete last audio frame: a video, and
    a record naming the concealed audio frame (as FFmpeg decodes it, the command does not fail)."""
    import json

    from tests.test_cli import run_loom

    source = make_shape("mpeg4-ac3-avi-damaged-audio", tmp_path / "in")
    (tmp_path / "t.json").write_text(json.dumps(_template(source)))
    (tmp_path / "row.json").write_text(json.dumps({"company": "Globex"}))
    proc = run_loom("personalize", "--template", str(tmp_path / "t.json"), "--data", str(tmp_path / "row.json"),
                    "--out", str(tmp_path / "out.mp4"), home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip().splitlines()[-1]
    assert Path(out).is_file() and decode_errors(out) == ""
    record = json.loads(Path(out).with_suffix(".json").read_text())
    (concealed,) = record["concealed"]
    assert concealed["stream"] == "audio" and concealed["count"] == 1 and concealed["time"] > 1.0
    assert any(w.startswith("concealed: 1 damaged audio frame") for w in record["warnings"])


def test_cli_refuses_a_video_without_one_decodable_frame(tmp_path: Path) -> None:
    import json

    from tests.test_cli import run_loom

    source = make_shape("no-audio", tmp_path / "in")
    with av.open(str(source)) as container:
        spans = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(source.read_bytes())
    for pos, size in spans:
        data[pos : pos + size] = bytes(size)
    source.write_bytes(bytes(data))
    (tmp_path / "t.json").write_text(json.dumps(_template(source)))
    (tmp_path / "row.json").write_text(json.dumps({"company": "Globex"}))
    proc = run_loom("personalize", "--template", str(tmp_path / "t.json"), "--data", str(tmp_path / "row.json"),
                    home=tmp_path / "home")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "base_video_path" in lines[0] and "no decodable video frame" in lines[0], proc.stderr


# ---------------------------------------------------------------- a plain box through a camera move and a scene cut

PLAIN_BOX = {"x": 0.72, "y": 0.03, "width": 0.22, "height": 0.16}  # dark background; the next shot has a face there


def test_plain_box_stays_put_and_is_left_alone_after_the_scene_cut(tmp_path: Path, loom_home: Path) -> None:
    """Real film: an image box over a dark, plain patch of the first shot. It stays where the template
    put it through the shot; after the cut (a man's face is there in the next shot) every frame is
    flagged and left untouched; no pixel away from the box ever changes."""
    from PIL import Image

    from loom.visual.tracking import load_track
    from testkit.footage import excerpt_mp4

    source = excerpt_mp4(tmp_path / "cut.mp4", start=3.0, seconds=2.0)  # 48 frames; the shot changes at 27
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (64, 40), (240, 200, 30, 255)).save(logo)
    data = {"id": "plain-box", "base_video_path": str(source), "voice_segments": [],
            "visual_segments": [{"id": "brand", "segment_type": "image", "start_time": 0.2, "end_time": 1.9,
                                 "placeholder_key": "logo", **PLAIN_BOX}]}
    result = pipeline.personalize(parse_template(data), {"logo": str(logo)}, str(tmp_path / "out.mp4"))
    prepared = pipeline.prepare_template(parse_template(data))
    track = load_track(prepared.tracks["brand"])
    cut = 27
    assert cut in track.scene_cuts
    w, h = prepared.video.width, prepared.video.height
    x0, y0 = PLAIN_BOX["x"] * w, PLAIN_BOX["y"] * h
    before = [k for k in range(track.first_frame, cut)]
    after = [k for k in range(cut, track.stop_frame)]
    assert all(track.box_at(k) is None for k in after)  # another shot: flagged, never drawn
    kept = [track.box_at(k) for k in before if track.box_at(k) is not None]
    assert len(kept) >= 0.8 * len(before)
    for box in kept:  # where the template put it (the camera barely moves in this shot)
        assert abs(box[0] - x0) <= 0.03 * w and abs(box[1] - y0) <= 0.03 * h, box
    assert any("not found" in line for line in result.warnings)

    fps = Fraction(prepared.video.fps)
    shown, made = shown_luma(str(source), fps, (w, h)), shown_luma(result.output_uri, fps, (w, h))
    assert len(made) == len(shown)
    margin = 6
    away = np.ones((h, w), bool)
    away[max(0, int(y0) - margin) : int(y0 + PLAIN_BOX["height"] * h) + margin,
         max(0, int(x0) - margin) : int(x0 + PLAIN_BOX["width"] * w) + margin] = False
    for i in range(len(made)):
        assert psnr(shown[i][away], made[i][away]) >= 38, f"frame {i} changed away from the box"
        if i >= cut:
            assert psnr(shown[i], made[i]) >= 38, f"frame {i} after the cut was edited"
    drawn = [k for k in before if track.box_at(k) is not None]
    assert psnr(shown[drawn[len(drawn) // 2]][~away], made[drawn[len(drawn) // 2]][~away]) < 25  # the logo is there


# ---------------------------------------------------------------- two people, then a cut to a third shot

TALK = {"start": 2.5, "seconds": 3.0, "width": 640}  # the shot changes at frame 39 of the excerpt
TALK_CUT = 39
TALK_WINDOW = (0.3, 2.8)


def assert_one_face(faces, width: int) -> dict:  # noqa: ANN001
    """The window's boxes follow one person: all in one shot (the other is another person), most of
    that shot's frames found, moving continuously; the rest counted as frames without a face."""
    found = {k: faces.box(k) for k in range(faces.first, faces.stop) if faces.box(k) is not None}
    assert faces.scene_cuts == [TALK_CUT]
    assert found and (all(k < TALK_CUT for k in found) or all(k >= TALK_CUT for k in found)), sorted(found)
    shot = range(faces.first, TALK_CUT) if min(found) < TALK_CUT else range(TALK_CUT, faces.stop)
    assert len(found) >= 0.8 * len(shot)
    # ... never the man behind the woman (at the right of the first shot): no jump between frames
    centres = [((b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2) for _, b in sorted(found.items())]
    assert all(np.hypot(a[0] - b[0], a[1] - b[1]) < 0.12 * width for a, b in zip(centres, centres[1:]))
    assert all(b.width > 0.15 * width for b in found.values())
    assert faces.frames_without_face == (faces.stop - faces.first) - len(found)
    return found


def test_one_face_is_followed_through_a_window_with_two_people_and_a_cut(tmp_path: Path) -> None:
    """Real film: a woman speaks with a man behind her, then the shot cuts to another man. The face
    boxes follow one of them for the whole window; the other frames have none and are counted."""
    from loom.lipsync.faces import detect_faces
    from loom.media.probe import probe_video
    from testkit.footage import excerpt_mp4

    source = excerpt_mp4(tmp_path / "talk.mp4", **TALK)
    info = probe_video(str(source))
    first, stop = info.frame_span(*TALK_WINDOW)
    faces = detect_faces(str(source), info, first, stop, str(tmp_path / "faces.json"))
    assert_one_face(faces, info.width)
    assert any("other face" in w for w in faces.warnings)


@pytest.mark.e2e
def test_mouth_patch_stays_on_one_face_and_the_other_shot_is_left_alone(
    tmp_path: Path, loom_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same window through prepare and the Wav2Lip engine (random weights of the official
    shapes): every patch lies on the followed face, every other frame is untouched and counted."""
    import wave

    from loom.edits import AudioInsert
    from loom.lipsync import engine
    from loom.lipsync.faces import load_face_track
    from loom.media.patches import PatchSet
    from testkit.footage import excerpt_mp4

    source = excerpt_mp4(tmp_path / "talk.mp4", **TALK)
    data = {"id": "two-people", "base_video_path": str(source), "visual_segments": [],
            "voice_segments": [{"id": "hi", "start_time": TALK_WINDOW[0], "end_time": TALK_WINDOW[1],
                                "template_text": "Hi {name}!"}]}
    prepared = pipeline.prepare_template(parse_template(data))
    faces = load_face_track(prepared.faces["hi"])
    found = assert_one_face(faces, prepared.video.width)

    rate = 48000
    line = tmp_path / "line.wav"
    with wave.open(str(line), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        t = np.arange(int(2.5 * rate)) / rate
        out.writeframes((0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) * 16000).astype(np.int16).tobytes())
    with random_wav2lip(tmp_path, monkeypatch):
        segment = prepared.template.voice_segments[0]
        insert = AudioInsert(segment_id="hi", uri=str(line), start=TALK_WINDOW[0], end=TALK_WINDOW[1], sample_rate=rate)
        ref = engine.lipsync_segment(prepared, segment, insert, str(tmp_path / "lips.npz"))
    assert ref is not None and ref.qa["frames_without_face"] == faces.frames_without_face
    patched = PatchSet.load(ref.uri).frames
    assert patched and set(patched) <= set(found)  # frames without a trustworthy face: untouched
    for k, patches in patched.items():
        box = faces.box(k)
        for patch in patches:  # inside (the padded neighbourhood of) that face's box
            assert box.x1 - 16 <= patch.x and patch.x + patch.rgba.shape[1] <= box.x2 + 16, (k, patch.x)
