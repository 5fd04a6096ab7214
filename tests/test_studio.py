"""The template studio's routes (issue 19), without a browser: sign-in, uploads, scrubbing,
checking, tracking, saving and trying. The browser path is ``test_studio_browser.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.api import create_app
from loom.settings import LoomSettings, reload_settings
from testkit.media import make_clip

KEY = "studio-key-0123456789"


@pytest.fixture
def studio(loom_home: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.delenv("LOOM_ALLOWED_ROOTS")  # a server: only $LOOM_HOME
    loom_home.mkdir(parents=True, exist_ok=True)
    reload_settings()
    return TestClient(create_app(LoomSettings(api_keys=SecretStr(KEY)), rate_limit_per_minute=0))


def _signed_in(client: TestClient) -> TestClient:
    assert client.post("/studio/session", json={"key": KEY}).status_code == 200
    return client


def _upload(client: TestClient, tmp_path: Path, seconds: float = 2.0) -> dict:
    clip = make_clip(tmp_path / "rec.mp4", seconds=seconds, size=(320, 240))
    r = client.post("/studio/api/uploads?name=My%20Demo.mp4", content=clip.read_bytes())
    assert r.status_code == 200, r.text
    return r.json()


def test_without_a_key_the_page_and_every_route_answer_401(studio: TestClient) -> None:
    page = studio.get("/studio")
    assert page.status_code == 401 and 'id="signin"' in page.text  # the sign-in form, nothing else
    for method, path in [
        ("get", "/studio/assets/studio.js"),
        ("post", "/studio/api/uploads?name=a.mp4"),
        ("post", "/studio/api/recordings"),
        ("get", "/studio/api/frame?recording=x"),
        ("get", "/studio/api/waveform?recording=x"),
        ("post", "/studio/api/validate"),
        ("post", "/studio/api/templates"),
        ("post", "/studio/api/try"),
        ("get", "/studio/api/jobs/abc"),
    ]:
        assert getattr(studio, method)(path).status_code == 401, path
    assert studio.post("/studio/session", json={"key": "wrong"}).status_code == 401
    assert studio.get("/studio/api/jobs/abc", headers={"X-API-Key": KEY}).status_code == 404  # a key works too
    signed = _signed_in(studio)
    assert signed.get("/studio").status_code == 200 and 'id="overlay"' in signed.get("/studio").text
    assert signed.get("/studio/assets/studio.js").status_code == 200


def test_a_forged_or_foreign_cookie_is_refused(studio: TestClient) -> None:
    other = TestClient(create_app(LoomSettings(api_keys=SecretStr(KEY)), rate_limit_per_minute=0))
    other.post("/studio/session", json={"key": KEY})
    cookie = other.cookies.get("loom_studio")
    assert cookie and studio.get("/studio", cookies={"loom_studio": cookie}).status_code == 401  # another server's
    who, expiry, sig = cookie.split(".")
    assert studio.get("/studio", cookies={"loom_studio": f"{who}.{int(expiry) + 9999}.{sig}"}).status_code == 401


def test_uploads_are_streamed_capped_and_probed(studio: TestClient, tmp_path: Path, loom_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = _signed_in(studio)
    info = _upload(client, tmp_path)
    assert info["width"] == 320 and info["height"] == 240 and abs(info["duration"] - 2.0) < 0.05
    assert Path(info["recording"]).parent == (loom_home / "uploads").resolve() and info["name"] == "My-Demo.mp4"
    not_video = client.post("/studio/api/uploads?name=notes.mp4", content=b"these are not frames" * 100)
    assert not_video.status_code == 422 and not_video.json()["detail"].startswith("recording: ")
    assert client.post("/studio/api/uploads?name=notes.txt", content=b"x").status_code == 415
    monkeypatch.setenv("LOOM_STUDIO_UPLOAD_MB", "1")
    reload_settings()
    big = client.post("/studio/api/uploads?name=big.mp4", content=b"\0" * (2 * 2**20))
    assert big.status_code == 413 and big.json()["detail"] == "file: is over 1 MB (upload a recording under 1 MB)"
    assert sorted(p.name for p in (loom_home / "uploads").iterdir() if p.is_file()) == [Path(info["recording"]).name]  # nothing half-kept


def test_a_named_recording_is_held_to_the_input_policy(studio: TestClient, tmp_path: Path) -> None:
    client = _signed_in(studio)
    make_clip(tmp_path / "outside.mp4", seconds=1.0, size=(160, 120))
    r = client.post("/studio/api/recordings", json={"recording": str(tmp_path / "outside.mp4")})
    assert r.status_code == 422 and "is not in a folder this server reads for clients" in r.json()["detail"]
    r = client.get("/studio/api/frame", params={"recording": "/etc/passwd", "t": 0})
    assert r.status_code == 422


def test_frames_and_the_waveform_for_the_scrubber(studio: TestClient, tmp_path: Path) -> None:
    import cv2
    import numpy as np

    client = _signed_in(studio)
    info = _upload(client, tmp_path)
    r = client.get("/studio/api/frame", params={"recording": info["recording"], "t": 1.0, "w": 160})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (120, 160, 3)
    other = client.get("/studio/api/frame", params={"recording": info["recording"], "t": 0.0, "w": 160}).content
    assert other != r.content  # another time, another frame (the test clip moves)
    wave = client.get("/studio/api/waveform", params={"recording": info["recording"], "bins": 50}).json()
    assert len(wave["peaks"]) == 50 and max(hi for _, hi in wave["peaks"]) > 0.05  # the clip has a tone
    ranged = client.get("/studio/api/media", params={"recording": info["recording"]}, headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and len(ranged.content) == 100


def _template(info: dict) -> dict:
    return {
        "id": "studio-made",
        "name": "made in the studio",
        "base_video_path": info["recording"],
        "voice_segments": [{"id": "line1", "start_time": 0.2, "end_time": 1.2, "template_text": "Hi {client_name}!", "lipsync": False}],
        "visual_segments": [
            {"id": "box1", "segment_type": "text", "placeholder_key": "company_name", "start_time": 0.4, "end_time": 1.6,
             "x": 0.1, "y": 0.1, "width": 0.4, "height": 0.15, "track": False},
        ],
    }


def test_every_change_is_checked_by_create_templates_code(studio: TestClient, tmp_path: Path) -> None:
    client = _signed_in(studio)
    info = _upload(client, tmp_path)
    good = client.post("/studio/api/validate", json={"template": _template(info)}).json()
    assert good["ok"] and good["placeholders"] == ["client_name", "company_name"]
    late = _template(info)
    late["visual_segments"][0]["end_time"] = 9.0
    bad = client.post("/studio/api/validate", json={"template": late}).json()
    assert not bad["ok"] and bad["problems"] == [
        {
            "field": "visual_segments[box1].end_time",
            "message": "visual_segments[box1].end_time: 9s is after the end of the video (2.000s) (use an end_time of at most 2.000)",
            "kind": "visual_segments",
            "index": 0,
            "attr": "end_time",
        }
    ]
    unclosed = _template(info)
    unclosed["voice_segments"][0]["template_text"] = "Hi {client_name"
    problem = client.post("/studio/api/validate", json={"template": unclosed}).json()["problems"][0]
    assert problem["kind"] == "voice_segments" and problem["index"] == 0


def test_the_track_the_engine_will_follow_is_shown(studio: TestClient, tmp_path: Path) -> None:
    client = _signed_in(studio)
    info = _upload(client, tmp_path)
    template = _template(info)
    template["visual_segments"][0]["track"] = False
    track = client.post("/studio/api/track", json={"template": template, "segment_id": "box1"}).json()
    assert track["first_frame"] == round(0.4 * track["fps"]) and len(track["boxes"]) == round(1.2 * track["fps"])
    assert track["boxes"][0] == pytest.approx([0.1, 0.1, 0.4, 0.15], abs=1 / 320)
    assert track["flagged"] == 0


def test_save_prepares_and_stores_as_create_template_does_and_try_renders(studio: TestClient, tmp_path: Path, loom_home: Path) -> None:
    import time

    client = _signed_in(studio)
    info = _upload(client, tmp_path)
    started = client.post("/studio/api/templates", json={"template": _template(info)}).json()
    deadline = time.monotonic() + 120
    while (job := client.get(f"/studio/api/jobs/{started['job']}").json())["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job["status"] == "done", job
    stored = json.loads((loom_home / "templates" / "studio-made.json").read_text())
    assert stored["visual_segments"][0]["x"] == 0.1 and stored["base_video_path"] == info["recording"]
    assert list((loom_home / "prepared").iterdir())  # prepared, as create-template would
    tried = client.post("/studio/api/try", json={"template_id": "studio-made", "values": {"client_name": "Ada", "company_name": "Globex"}}).json()
    while (result := client.get(f"/studio/api/jobs/{tried['job']}").json())["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert result["status"] == "done", result
    video = client.get(result["video_url"])
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    assert client.get("/studio/api/output", params={"path": "/etc/passwd"}).status_code == 404


def test_find_it_proposes_the_window_where_the_words_were_said(studio: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from testkit.fake_elevenlabs import FakeElevenLabs

    client = _signed_in(studio)
    info = _upload(client, tmp_path)
    no_key = client.post("/studio/api/transcribe", json={"recording": info["recording"], "phrase": "Acme"})
    assert no_key.status_code == 422 and no_key.json()["detail"].startswith("ELEVENLABS_API_KEY: is not set")
    with FakeElevenLabs(api_key="el-key") as fake:
        fake.heard = [("Hi", 0.30, 0.45), ("there,", 0.50, 0.80), ("Acme", 0.95, 1.30), ("Corp!", 1.35, 1.70)]
        monkeypatch.setenv("ELEVENLABS_API_KEY", "el-key")
        monkeypatch.setenv("ELEVENLABS_BASE_URL", fake.base_url)
        found = client.post("/studio/api/transcribe", json={"recording": info["recording"], "phrase": "acme corp"}).json()
        assert found["window"] == pytest.approx([0.80, 1.85])
        assert [w["text"] for w in found["words"]] == ["Hi", "there,", "Acme", "Corp!"]
        again = client.post("/studio/api/transcribe", json={"recording": info["recording"], "phrase": "there"}).json()
        assert again["window"] == pytest.approx([0.35, 0.95])
        (request,) = fake.requests_to("speech-to-text")  # once per recording: the second answer was kept
    assert request.form["model_id"] == "scribe_v2" and request.form["timestamps_granularity"] == "word"
    assert request.files and request.files[0][1][:4] == b"RIFF"  # the audio, not the video


def test_a_sheets_first_rows_fill_the_try_values(studio: TestClient) -> None:
    client = _signed_in(studio)
    r = client.post("/studio/api/sheet-rows?name=leads.csv", content=b"client_name,company_name,client_name\nAda,Globex,Eve\nGrace,Initech,\n")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["columns"] == ["client_name", "company_name"]
    assert body["rows"] == [{"client_name": "Ada", "company_name": "Globex"}, {"client_name": "Grace", "company_name": "Initech"}]
    assert "appears more than once" in body["warnings"][0]
    assert client.post("/studio/api/sheet-rows?name=leads.pdf", content=b"%PDF").status_code == 415
    empty = client.post("/studio/api/sheet-rows?name=leads.csv", content=b"")
    assert empty.status_code == 422 and empty.json()["detail"].startswith("sheet: ")
