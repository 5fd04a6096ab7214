"""Plugins through entry points: the example package under examples/ is installed into a folder of
its own, found as any installed package is, and used end to end (a lip-sync backend on a whole
clip and on a voice window, a visual effect in a template)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from loom import pipeline, plugins
from loom.errors import InputError
from loom.lipsync.clips import clip_backend_segment
from loom.lipsync.faces import detect_faces
from loom.media.patches import PatchSet
from loom.media.probe import probe_video
from loom.settings import reload_settings
from loom.template import parse_template
from testkit.media import decode_rgb, make_clip, write_mp4
from tests.test_lipsync_fixtures import FPS, make_insert, make_prepared, speech_like, write_face_clip, write_wav

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "loom-example-plugin"
LOOM = str(Path(sys.executable).with_name("loom"))


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example package installed (built from its pyproject.toml) into a folder on sys.path."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), str(EXAMPLE)],
        check=True, capture_output=True,
    )
    sys.path.insert(0, str(target))
    plugins.forget_installed()
    yield target
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m.startswith("loom_example_plugin")]:
        del sys.modules[name]
    plugins.forget_installed()


def _loom(args: list[str], plugin_dir: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(plugin_dir), **env}
    return subprocess.run([LOOM, *args], capture_output=True, text=True, env=environ, timeout=300)


def test_loom_plugins_lists_built_ins_and_the_installed_package(plugin_dir: Path) -> None:
    result = _loom(["plugins"], plugin_dir)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert {"wav2lip", "synclabs", "text", "image", "example-mouth", "pixelate"} <= set(rows)
    assert "better_loom.lipsync" in rows["example-mouth"] and "loom-example-plugin 0.1.0" in rows["example-mouth"]
    assert "better_loom.visual" in rows["pixelate"] and "loom-example-plugin 0.1.0" in rows["pixelate"]
    assert "better-loom" in rows["wav2lip"] and "better_loom.visual" in rows["text"]


def test_an_unknown_backend_fails_at_start_naming_the_installed_ones(plugin_dir: Path, tmp_path: Path) -> None:
    result = _loom(["lipsync", "--video", "v.mp4", "--audio", "a.wav", "--out", str(tmp_path / "o.mp4")], plugin_dir,
                   LOOM_LIPSYNC_BACKEND="musetalk")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: LOOM_LIPSYNC_BACKEND:") and "'musetalk'" in line
    assert "example-mouth, synclabs, wav2lip" in line
    # the same check before any work of a recipient
    (tmp_path / "row.json").write_text('{"client_name": "Ada"}')
    result = _loom(["personalize", "--template", "nope", "--data", str(tmp_path / "row.json")], plugin_dir, LOOM_LIPSYNC_BACKEND="musetalk")
    assert result.returncode == 2 and "LOOM_LIPSYNC_BACKEND" in result.stderr


def test_a_plugin_backend_changes_the_clip_only_around_the_face(plugin_dir: Path, tmp_path: Path) -> None:
    video = write_face_clip(tmp_path / "face.mp4")
    audio = write_wav(tmp_path / "line.wav", speech_like(60 / FPS), 16000)
    out = tmp_path / "synced.mp4"
    result = _loom(["lipsync", "--video", str(video), "--audio", str(audio), "--out", str(out)], plugin_dir,
                   LOOM_LIPSYNC_BACKEND="example-mouth")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(out)
    before, after = decode_rgb(video), decode_rgb(out)
    assert len(before) == len(after) == 60
    track = detect_faces(str(video), probe_video(str(video)), 0, 60, str(tmp_path / "faces.json"))
    changed_faces = 0
    for i, (a, b) in enumerate(zip(before, after)):
        moved = np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 40  # the plugin inverts: far beyond x264's noise
        box = track.box(i)
        outside = moved.copy()
        if box is not None:
            # the lower face may change (2 px more for 4:2:0 chroma and x264 at its edge)
            outside[box.y1 + box.height // 2 - 2 : box.y2 + 2, max(0, box.x1 - 2) : box.x2 + 2] = False
            changed_faces += moved[box.y1 + box.height // 2 : box.y2, box.x1 : box.x2].mean() > 0.05
        # the plugin repainted every pixel; a stray one at a sharp edge is x264's (a re-encode, crf 17)
        assert outside.mean() < 1e-3, f"frame {i}: {int(outside.sum())} pixels changed outside the lower face"
    assert changed_faces >= 40  # the backend's frames did come back, on every frame with a face


def _recording_sound(uri: str) -> None:
    """The prepared template's audio: 16-bit stereo PCM, as prepare writes it."""
    from loom.voice.wav import write_wav as write_pcm

    speech = speech_like(60 / FPS, 48000, seed=4)
    write_pcm(uri, np.stack([speech, speech], axis=1), 48000)


def test_a_plugin_backend_on_a_voice_window_patches_only_the_windows_lower_faces(
    plugin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared = make_prepared(tmp_path / "prep", 0.68, 1.32)  # frames 17-32
    _recording_sound(prepared.audio_uri)
    insert = make_insert(tmp_path / "voice", 0.68, 1.32)
    monkeypatch.setenv("LOOM_LIPSYNC_BACKEND", "example-mouth")
    reload_settings()
    try:
        segment = prepared.template.voice_segments[0]
        ref = pipeline.lipsync_line(prepared, segment, insert, str(tmp_path / "work"))
    finally:
        monkeypatch.undo()
        reload_settings()
    assert ref is not None and ref.qa["backend"] == "example-mouth" and ref.qa["handles"] == [5, 5]
    patches = PatchSet.load(ref.uri)
    assert set(patches.frames) and set(patches.frames) <= set(range(17, 33))  # never a handle frame
    assert ref.frames_patched == len(patches.frames) >= 5 and not ref.qa.get("flagged")


class _ShortClip:
    """A backend that drops a frame: its output cannot be matched to the window's frames."""

    def sync(self, video_path: str, audio_path: str, output_path: str, **kwargs: object) -> None:
        write_mp4(output_path, decode_rgb(video_path)[:-1], FPS)


def test_a_clip_that_comes_back_with_other_frames_leaves_the_mouth_untouched_and_flagged(tmp_path: Path) -> None:
    prepared = make_prepared(tmp_path / "prep", 0.68, 1.32)
    _recording_sound(prepared.audio_uri)
    insert = make_insert(tmp_path / "voice", 0.68, 1.32)
    segment = prepared.template.voice_segments[0]
    ref = clip_backend_segment(_ShortClip(), "short", prepared, segment, insert, str(tmp_path / "lips.npz"))
    assert ref.frames_patched == 0 and PatchSet.load(ref.uri).frames == {}
    assert ref.qa["flagged"] is True and "returned 25 of the 26 frames" in ref.qa["warnings"][0]


def _effect_template(tmp_path: Path, **segment: object) -> dict:
    make_clip(tmp_path / "base.mp4", seconds=2.0, size=(160, 120))
    return {
        "id": "fx",
        "base_video_path": str(tmp_path / "base.mp4"),
        "visual_segments": [
            {"id": "blur", "start_time": 0.4, "end_time": 1.2, "x": 0.25, "y": 0.25, "width": 0.5, "height": 0.5,
             "track": False, **segment},
        ],
    }


def test_a_plugin_effect_changes_its_box_in_its_frames_and_nothing_else(plugin_dir: Path, tmp_path: Path, loom_home: Path) -> None:
    data = _effect_template(tmp_path, segment_type="pixelate", params={"block": 8})
    template = parse_template(data)
    assert template.placeholders() == []  # an effect needs no value
    result = pipeline.personalize(template, {}, str(tmp_path / "out.mp4"))
    (ref,) = result.patches
    assert ref.qa["effect"] == "pixelate" and (ref.first_frame, ref.stop_frame) == (10, 30)
    working = pipeline.prepare_template(template).working_video_uri  # what the splice edits (cached)
    before, after = decode_rgb(working), decode_rgb(result.output_uri)
    assert len(before) == len(after) == 50
    x0, y0, x1, y1 = 40, 30, 120, 90  # the box in pixels
    for i, (a, b) in enumerate(zip(before, after)):
        diff = np.abs(a.astype(int) - b.astype(int)).max(axis=2)
        outside = diff.copy()
        outside[y0:y1, x0:x1] = 0
        # outside the box only the span's re-encode (x264 at crf 10 on a busy test pattern: ~1.5 levels
        # on average); pixelating this pattern moves it by ~22
        assert outside.mean() < 3 and np.percentile(outside, 99) <= 16, f"frame {i} changed outside the box"
        if 10 <= i < 30:
            cells = [(img[y0 + 8 * k : y0 + 8 * k + 8, x0 + 8 * k : x0 + 8 * k + 8].astype(float)) for img in (a, b) for k in range(1, 6)]
            was, now = np.mean([c.std(axis=(0, 1)).mean() for c in cells[:5]]), np.mean([c.std(axis=(0, 1)).mean() for c in cells[5:]])
            assert now < 2.0 and was > 2.5 * now, (i, now, was)  # one colour per 8x8 block, where the pattern varied
            assert diff[y0:y1, x0:x1].mean() > 3, i  # the clip's gradient really was flattened
        else:
            assert diff.max() == 0, f"frame {i} is outside the segment"  # copied, not re-encoded


def test_effect_params_and_types_are_checked_with_one_line(plugin_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        parse_template(_effect_template(tmp_path, segment_type="pixelate", params={"block": 1}))
    assert err.value.field == "visual_segments[blur].params.block" and "greater than or equal to 2" in err.value.line()
    with pytest.raises(InputError) as err:
        parse_template(_effect_template(tmp_path, segment_type="sparkle"))
    assert err.value.field == "visual_segments[blur].segment_type"
    assert "no visual effect named 'sparkle'" in err.value.problem and "image, pixelate, text" in err.value.line()
    with pytest.raises(InputError) as err:
        parse_template(_effect_template(tmp_path, segment_type="text"))
    assert err.value.field == "visual_segments[blur].placeholder_key"
    # a value for the effect, when the segment names one, arrives as params["value"]
    template = parse_template(_effect_template(tmp_path, segment_type="pixelate", placeholder_key="company_name"))
    assert template.placeholders() == ["company_name"] and template.visual_segments[0].params == {"block": 8}



class _Shrinking:
    def apply(self, frame: np.ndarray, box: tuple[int, int, int, int], params: dict) -> np.ndarray:
        return frame[:10]


class _Spilling:
    """Paints the whole frame: only what it changed inside the box may become the patch."""

    def apply(self, frame: np.ndarray, box: tuple[int, int, int, int], params: dict) -> np.ndarray:
        frame[...] = 255
        return frame


def test_an_effect_is_held_to_its_box_and_to_the_frames_shape() -> None:
    from loom.errors import RecipientFailed
    from loom.visual.effects import effect_patch

    frame = np.zeros((40, 60, 3), np.uint8)
    frame[10:20, 10:30] = 255  # already white inside part of the box: those pixels are not changed
    patch = effect_patch(_Spilling(), "spill", frame, (5, 8, 30, 20), {})
    assert (patch.x, patch.y) == (5, 8) and patch.rgba.shape == (20, 30, 4)
    alpha = patch.rgba[..., 3]
    assert alpha[2:12, 5:25].max() == 0 and alpha.sum() == 255 * (20 * 30 - 10 * 20)
    with pytest.raises(RecipientFailed, match=r"visual effect shrink returned uint8 \(10, 60, 3\)") as err:
        effect_patch(_Shrinking(), "shrink", frame, (5, 8, 30, 20), {})
    assert "\n" not in str(err.value)
