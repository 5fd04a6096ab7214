"""Face boxes on a real face (the astronaut) moving through frames, with a blank span and a cut."""

from __future__ import annotations

import numpy as np
import pytest

from loom.lipsync.faces import (
    DEFAULT_PADS,
    FaceTrack,
    HaarFaceDetector,
    bridge_gaps,
    choose_face,
    detect_faces,
    face_detector,
    load_face_track,
    smooth_boxes,
)
from loom.media.probe import probe_video
from tests.test_lipsync_fixtures import BLANK, CUT, HEAD, MOUTH_IN_HEAD, N_FRAMES, face_frame, head_position, write_face_clip


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory: pytest.TempPathFactory):
    path = write_face_clip(tmp_path_factory.mktemp("faces") / "faces.mp4")
    return str(path), probe_video(str(path))


@pytest.fixture(scope="module")
def whole_track(face_clip, tmp_path_factory: pytest.TempPathFactory) -> FaceTrack:
    uri, info = face_clip
    return detect_faces(uri, info, 0, N_FRAMES, str(tmp_path_factory.mktemp("track") / "faces.json"))


def test_faces_found_on_face_frames_and_none_on_blank_ones(whole_track: FaceTrack) -> None:
    face_frames = [i for i in range(N_FRAMES) if head_position(i) is not None]
    found = [i for i in face_frames if whole_track.box(i) is not None]
    assert len(found) >= 0.9 * len(face_frames)
    assert all(whole_track.box(i) is None for i in BLANK)
    assert whole_track.frames_without_face == N_FRAMES - len(found)
    assert whole_track.detector == "haar" and tuple(whole_track.pads) == DEFAULT_PADS
    assert any("no face in" in w for w in whole_track.warnings)


def test_boxes_hold_the_face_with_the_mouth_in_their_lower_half(whole_track: FaceTrack) -> None:
    for i in range(N_FRAMES):
        box, pos = whole_track.box(i), head_position(i)
        if box is None or pos is None:
            continue
        mx, my = pos[0] + MOUTH_IN_HEAD[0], pos[1] + MOUTH_IN_HEAD[1]
        assert box.x1 < mx < box.x2 and box.y1 + 0.5 * box.height < my < box.y2, (i, box)
        assert pos[0] - 2 <= box.x1 and box.x2 <= pos[0] + HEAD + 2  # inside the pasted head
        assert 0.2 * HEAD < box.width < 0.7 * HEAD


def test_scene_cut_found_and_not_smoothed_across(whole_track: FaceTrack) -> None:
    assert CUT in whole_track.scene_cuts
    # Unit check of the rule on synthetic boxes: a jump at a cut stays a jump.
    raw = [np.array([10.0 * k, 0, 10.0 * k + 50, 60]) for k in range(4)] + [np.array([200.0, 0, 250, 60])] * 4
    smoothed = smooth_boxes(raw, cuts={4})
    assert smoothed[4][0] == 200.0 and smoothed[3][0] == pytest.approx(20.0)
    assert smooth_boxes(raw, cuts=set())[4][0] < 200.0  # without the cut it would have blended


def test_short_misses_bridged_but_not_across_cuts() -> None:
    a, b = np.array([0.0, 0, 40, 40]), np.array([30.0, 0, 70, 40])
    raw = [a, None, None, b]
    assert bridge_gaps(raw, cuts=set()) == [1, 2]
    assert raw[1][0] == pytest.approx(10.0) and raw[2][0] == pytest.approx(20.0)
    raw = [a, None, None, b]
    assert bridge_gaps(raw, cuts={2}) == [] and raw[1] is None
    raw = [a] + [None] * 8 + [b]
    assert bridge_gaps(raw, cuts=set()) == []  # a long miss stays a miss


def test_the_same_person_is_followed_among_several_faces() -> None:
    big = np.array([100.0, 100, 200, 200])
    small = np.array([10.0, 10, 60, 60])
    assert choose_face([small, big], previous=None) is big
    near_small = np.array([12.0, 11, 61, 62])
    assert choose_face([near_small, big], previous=small) is near_small
    assert choose_face([], previous=small) is None


def test_window_track_round_trips_as_json(face_clip, tmp_path) -> None:
    uri, info = face_clip
    out = tmp_path / "w.json"
    track = detect_faces(uri, info, 5, 15, str(out))
    loaded = load_face_track(str(out))
    assert loaded == track
    assert (loaded.first, loaded.stop, len(loaded.boxes)) == (5, 15, 10)
    assert loaded.box(4) is None and loaded.box(15) is None and loaded.box(5) is not None
    assert loaded.frames_without_face == 0 and loaded.warnings == []


def test_haar_finds_the_astronaut_and_nothing_on_a_blank_frame() -> None:
    import cv2

    detector = face_detector(None)
    assert isinstance(detector, HaarFaceDetector)
    frame = cv2.cvtColor(face_frame(3), cv2.COLOR_RGB2BGR)
    assert len(detector.detect(frame)) >= 1
    assert detector.detect(np.full((240, 320, 3), 128, np.uint8)) == []


def test_missing_yunet_model_is_an_input_error(tmp_path) -> None:
    from loom.errors import InputError

    with pytest.raises(InputError, match="face_model"):
        face_detector(str(tmp_path / "absent.onnx"))


class _SpuriousBoxes:
    """The real Haar detector, plus what a real one sometimes returns: on the first detection frames
    a false, larger box on the shirt below the face, and a sliver (implausible proportions)."""

    name = "haar"

    def __init__(self, spurious_calls: int = 2) -> None:
        self.inner = HaarFaceDetector()
        self.calls = 0
        self.spurious_calls = spurious_calls

    def detect(self, bgr: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        found = self.inner.detect(bgr)
        self.calls += 1
        if self.calls <= self.spurious_calls:
            h, w = bgr.shape[:2]
            found = [*found, (0.0, h - 100.0, 140.0, 100.0, 1.0), (w - 30.0, 0.0, 12.0, 80.0, 1.0)]
        return found


def test_false_detections_never_take_the_face_and_one_face_is_followed(face_clip, tmp_path) -> None:
    """A larger false box next to the real face on the first frames is not chosen ("the largest box"
    would pick it), implausible boxes are dropped, and the boxes of the window stay on the face."""
    uri, info = face_clip
    track = detect_faces(uri, info, 0, 18, str(tmp_path / "f.json"), detector=_SpuriousBoxes())
    for i in range(18):
        box, pos = track.box(i), head_position(i)
        assert box is not None and pos is not None
        assert pos[0] - 2 <= box.x1 and box.x2 <= pos[0] + HEAD + 2 and box.y1 >= pos[1] - 2, (i, box)
    assert any("other face" in w for w in track.warnings)
