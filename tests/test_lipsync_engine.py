"""Lip-sync a voice window and a whole clip with a random-weights checkpoint of the official shapes."""

from __future__ import annotations

import hashlib
import logging

import av
import numpy as np
import pytest

from loom.edits import AudioInsert
from loom.errors import InputError
from loom.lipsync import engine
from loom.lipsync.blend import blend_mouth, lower_face_mask
from loom.lipsync.checkpoint import write_random_checkpoint
from loom.lipsync.faces import FaceBox, detect_faces, load_face_track
from loom.media.frames import read_frames
from loom.media.patches import PatchSet, apply_patches
from loom.media.probe import probe_video
from loom.prepared import PreparedTemplate
from loom.settings import reload_settings
from tests.test_lipsync_fixtures import BLANK, FPS, make_insert, make_prepared, speech_like, write_face_clip, write_wav

START, END = 0.68, 1.32  # frames 17-32: faces, the blank span 20-29, faces again after the cut


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_random_checkpoint(tmp_path_factory.mktemp("w2l") / "wav2lip_random.pth", seed=11))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> PreparedTemplate:
    return make_prepared(tmp_path_factory.mktemp("prepared"), START, END)


@pytest.fixture(scope="module")
def insert(tmp_path_factory: pytest.TempPathFactory) -> AudioInsert:
    return make_insert(tmp_path_factory.mktemp("voice"), START, END)


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, checkpoint: str):
    monkeypatch.setenv("LOOM_WAV2LIP_CHECKPOINT", checkpoint)
    monkeypatch.setenv("LOOM_WAV2LIP_BATCH_SIZE", "4")
    monkeypatch.setenv("LOOM_WAV2LIP_DEVICE", "cpu")
    reload_settings()
    yield checkpoint
    monkeypatch.undo()
    reload_settings()


def test_without_checkpoint_lipsync_is_skipped_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, prepared: PreparedTemplate, insert: AudioInsert, tmp_path
) -> None:
    monkeypatch.delenv("LOOM_WAV2LIP_CHECKPOINT", raising=False)
    reload_settings()
    engine.reset_engine()
    segment = prepared.template.voice_segments[0]
    with caplog.at_level(logging.WARNING, logger="loom.lipsync"):
        assert engine.lipsync_segment(prepared, segment, insert, str(tmp_path / "a.npz")) is None
        assert engine.lipsync_segment(prepared, segment, insert, str(tmp_path / "b.npz")) is None
    warnings = [r for r in caplog.records if "lip-sync skipped" in r.getMessage()]
    assert len(warnings) == 1 and "LOOM_WAV2LIP_CHECKPOINT" in warnings[0].getMessage()
    assert not (tmp_path / "a.npz").exists()
    assert engine.checkpoint_digest() is None
    with pytest.raises(InputError, match="checkpoint"):
        engine.lipsync_clip(prepared.working_video_uri, insert.uri, str(tmp_path / "o.mp4"))


def test_segment_patches_only_the_lower_face_of_face_frames(
    configured: str, prepared: PreparedTemplate, insert: AudioInsert, tmp_path
) -> None:
    engine.reset_engine()
    segment = prepared.template.voice_segments[0]
    ref = engine.lipsync_segment(prepared, segment, insert, str(tmp_path / "lips.npz"))
    assert ref is not None and ref.kind == "lipsync" and ref.segment_id == "hello"
    first, stop = ref.first_frame, ref.stop_frame
    assert (first, stop) == (17, 33)
    track = load_face_track(prepared.faces["hello"])
    with_face = [i for i in range(first, stop) if track.box(i) is not None]
    assert ref.frames_patched == len(with_face) >= 5
    assert ref.qa["frames_without_face"] == (stop - first) - len(with_face) >= len(BLANK)
    assert ref.qa["checkpoint"] == hashlib.sha256(open(configured, "rb").read()).hexdigest()[:16]
    assert ref.qa["device"] == "cpu"

    patches = PatchSet.load(ref.uri)
    assert set(patches.frames) == set(with_face)
    originals = dict(read_frames(prepared.working_video_uri, first, stop))
    for i, frame_patches in patches.frames.items():
        box = track.box(i)
        out = apply_patches(originals[i].copy(), frame_patches)
        changed = np.any(out != originals[i], axis=2)
        ys, xs = np.nonzero(changed)
        assert ys.size > 0.05 * box.width * box.height, i  # the mouth really was replaced
        assert xs.min() >= box.x1 and xs.max() < box.x2
        assert ys.min() >= box.y1 + box.height // 2 and ys.max() < box.y2  # upper face untouched

    # Same inputs, same model: identical patches (and the model is not reloaded).
    again = engine.lipsync_segment(prepared, segment, insert, str(tmp_path / "lips2.npz"))
    second = PatchSet.load(again.uri)
    for i, frame_patches in patches.frames.items():
        assert np.array_equal(frame_patches[0].rgba, second.frames[i][0].rgba)
        assert (frame_patches[0].x, frame_patches[0].y) == (second.frames[i][0].x, second.frames[i][0].y)
    assert len(engine._models) == 1


def test_mask_is_zero_on_upper_face_and_edges_and_feathered() -> None:
    for h, w in ((64, 52), (240, 200), (97, 131)):
        mask = lower_face_mask(h, w)
        assert mask.max() == pytest.approx(1.0)
        assert np.all(mask[: (h + 1) // 2] < 1 / 510)  # rounds to alpha 0: upper face stays original
        assert np.all(mask[-1] < 1 / 510) and np.all(mask[:, 0] < 1 / 510) and np.all(mask[:, -1] < 1 / 510)
        # no hard edge anywhere: neighbouring alphas differ by a fraction of the full range
        step = max(np.abs(np.diff(mask, axis=0)).max(), np.abs(np.diff(mask, axis=1)).max())
        assert step < 12.0 / min(h, w)


def test_blend_matches_colour_so_no_step_shows() -> None:
    rng = np.random.default_rng(0)
    frame = np.empty((200, 200, 3), np.uint8)
    frame[:] = (196, 142, 118)  # skin
    frame = np.clip(frame + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)
    box = FaceBox(x1=40, y1=30, x2=160, y2=170)
    generated = np.clip(np.full((96, 96, 3), (150, 100, 90), np.float32) + rng.normal(0, 3, (96, 96, 3)), 0, 255).astype(np.uint8)

    def composite(colour_match: bool) -> np.ndarray:
        patch = blend_mouth(frame, box, generated, colour_match=colour_match, sharpen_amount=0.0)
        return apply_patches(frame.astype(np.uint8).copy(), [patch]).astype(np.float32)

    mouth = (slice(box.y1 + 90, box.y1 + 110), slice(box.x1 + 45, box.x1 + 75))
    base = frame.astype(np.float32)
    assert np.abs(composite(False)[mouth] - base[mouth]).mean() > 30  # an off-colour patch shows...
    assert np.abs(composite(True)[mouth] - base[mouth]).mean() < 6  # ...unless matched to the skin
    matched = composite(True)
    assert np.array_equal(matched[: box.y1 + box.height // 2], base[: box.y1 + box.height // 2])


def test_lipsync_clip_writes_the_whole_clip_with_the_audio(
    configured: str, prepared: PreparedTemplate, tmp_path
) -> None:
    # frames 16-33 of the layout: 4 with a face, 10 blank, a cut, 4 with a face
    video = str(write_face_clip(tmp_path / "clip.mp4", n_frames=18, offset=16))
    audio = write_wav(tmp_path / "speech.wav", speech_like(18 / FPS, 22050, seed=5), 22050)
    out = tmp_path / "synced.mkv"
    report = engine.lipsync_clip_report(video, str(audio), str(out))
    assert report.output_uri == str(out) and out.exists()
    assert report.frames == 18 and report.frames_without_face == 10 and report.frames_patched == 8
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
        audio_seconds = sum(f.samples for f in c.decode(audio=0)) / c.streams.audio[0].sample_rate
    assert len(frames) == 18
    assert abs(audio_seconds - 18 / FPS) < 0.1
    originals = dict(read_frames(video, 0, 18))
    blank_diff = np.abs(frames[8].astype(int) - originals[8].astype(int)).mean()
    assert blank_diff < 2.0  # no face: only the re-encode differs
    track = detect_faces(video, probe_video(video), 0, 18, str(tmp_path / "t.json"))
    box = track.box(2)
    lower = (slice(box.y1 + box.height * 6 // 10, box.y2 - 2), slice(box.x1 + box.width // 4, box.x2 - box.width // 4))
    upper = (slice(box.y1, box.y1 + box.height * 4 // 10), slice(box.x1, box.x2))
    diff = np.abs(frames[2].astype(int) - originals[2].astype(int))
    assert diff[lower].mean() > 4 * max(diff[upper].mean(), 0.5)
