"""The Sync Labs backend against a fake API v2 on 127.0.0.1."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import SecretStr

from loom.errors import InputError, RecipientFailed, ServiceError
from loom.lipsync.faces import load_face_track
from loom.lipsync.synclabs import SyncLabsClient, SyncLabsSettings, reachable_url, synclabs_segment
from loom.media.frames import read_frames
from loom.media.patches import PatchSet, apply_patches
from testkit.fake_synclabs import running_fake_synclabs
from tests.test_lipsync_fixtures import make_insert, make_prepared

START, END = 0.6, 1.0  # frames 15-24: five with a face, five blank
KEY = "sk-test-123"


@pytest.fixture
def fake(tmp_path):
    with running_fake_synclabs(KEY, tmp_path) as server:
        yield server


def _client(fake, key: str = KEY) -> SyncLabsClient:
    return SyncLabsClient(SyncLabsSettings(api_key=SecretStr(key), base_url=fake.base_url, poll_seconds=0.01, retry_seconds=0.01))


def test_segment_takes_back_only_the_lower_face(fake, tmp_path, loom_home) -> None:
    prepared = make_prepared(tmp_path / "prep", START, END)
    insert = make_insert(tmp_path / "voice", START, END)
    segment = prepared.template.voice_segments[0]
    ref = synclabs_segment(prepared, segment, insert, str(tmp_path / "sync.npz"), client=_client(fake), publish=fake.serve_file)

    create = next(r for r in fake.requests if r["method"] == "POST")
    assert create["path"] == "/v2/generate" and create["headers"]["x-api-key"] == KEY
    body = create["body"]
    assert body["model"] == "lipsync-2" and body["options"] == {"sync_mode": "cut_off"}
    assert [i["type"] for i in body["input"]] == ["video", "audio"]
    assert all(i["url"].startswith(fake.base_url + "/files/") for i in body["input"])

    assert ref.kind == "lipsync" and ref.qa["backend"] == "synclabs"
    assert (ref.first_frame, ref.stop_frame) == (15, 25)
    track = load_face_track(prepared.faces[segment.id])
    with_face = [i for i in range(15, 25) if track.box(i) is not None]
    assert ref.frames_patched == len(with_face) >= 4 and ref.qa["frames_without_face"] == 10 - len(with_face)
    patches = PatchSet.load(ref.uri)
    originals = dict(read_frames(prepared.working_video_uri, 15, 25))
    for i, frame_patches in patches.frames.items():
        box = track.box(i)
        out = apply_patches(originals[i].copy(), frame_patches)
        ys, xs = np.nonzero(np.any(out != originals[i], axis=2))
        assert ys.size > 0  # the fake inverted the whole frame: some of it came back...
        assert ys.min() >= box.y1 + box.height // 2 and ys.max() < box.y2  # ...only the lower face
        assert xs.min() >= box.x1 and xs.max() < box.x2
        centre = (box.y1 + int(box.height * 0.73), box.x1 + box.width // 2)
        assert abs(int(out[centre][0]) - (255 - int(originals[i][centre][0]))) < 30  # the service's pixels


def test_transient_errors_are_retried_and_bad_keys_refused(fake, tmp_path) -> None:
    video = tmp_path / "v.mp4"
    from tests.test_lipsync_fixtures import write_face_clip

    write_face_clip(video, n_frames=5)
    audio = make_insert(tmp_path, 0.0, 0.2).uri
    fake.fail_next = [503, 429]
    client = _client(fake)
    out = client.lipsync(fake.serve_file(str(video)), fake.serve_file(audio), tmp_path / "out.mp4")
    assert out.exists() and out.stat().st_size > 0
    assert sum(r["method"] == "POST" for r in fake.requests) == 3  # two refusals, then accepted

    with pytest.raises(ServiceError, match="API key"):
        _client(fake, key="wrong").create("http://x/v.mp4", "http://x/a.wav")
    with pytest.raises(RecipientFailed, match="rejected: no face detected"):
        client.lipsync(fake.serve_file(str(video)), fake.serve_file(audio) + "?reject", tmp_path / "r.mp4")


def test_configuration_errors_are_input_errors(monkeypatch) -> None:
    monkeypatch.delenv("SYNC_API_KEY", raising=False)
    with pytest.raises(InputError, match="SYNC_API_KEY"):
        SyncLabsClient()
    with pytest.raises(InputError, match="cannot fetch"):
        reachable_url("/tmp/local.mp4")
    assert reachable_url("https://cdn.example/v.mp4") == "https://cdn.example/v.mp4"
