"""The jobs API's answers to clients, checked before any run is created (no Prefect needed).

Every case here is refused before the orchestrator is called; the Prefect API URL points at a
closed port so that a request that did get through would answer 503, not 202.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.api import create_app
from loom.errors import InputError
from loom.settings import LoomSettings

KEY = "test-key-0123456789"
OTHER_KEY = "other-key-9876543210"
SECRET = "whsec-test-abcdef"

TEMPLATE = {
    "id": "acme-demo",
    "name": "Acme demo",
    "base_video_path": "base.mp4",
    "voice_id": "voice-123",
    "voice_segments": [
        {"id": "greeting", "start_time": 0.2, "end_time": 1.0, "template_text": "Hello {client_name}!"},
    ],
    "visual_segments": [
        {"id": "plate", "segment_type": "text", "start_time": 0.2, "end_time": 1.5, "x": 0.5, "y": 0.1,
         "width": 0.3, "height": 0.1, "placeholder_key": "company_name"},
        {"id": "badge", "segment_type": "image", "start_time": 0.2, "end_time": 1.5, "x": 0.1, "y": 0.7,
         "width": 0.2, "height": 0.2, "placeholder_key": "logo"},
    ],
}


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def home(loom_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from loom.settings import reload_settings

    monkeypatch.delenv("LOOM_ALLOWED_ROOTS")  # only $LOOM_HOME and the video's folder: a server's roots
    reload_settings()
    (loom_home / "templates").mkdir(parents=True)
    (loom_home / "templates" / "acme-demo.json").write_text(json.dumps(TEMPLATE))
    (loom_home / "assets").mkdir()
    (loom_home / "assets" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{_closed_port()}/api")
    return loom_home


def _settings(**extra: object) -> LoomSettings:
    values = {"api_keys": SecretStr(f"{KEY}, {OTHER_KEY}"), "webhook_secret": SecretStr(SECRET)}
    values.update(extra)
    return LoomSettings(**values)


@pytest.fixture
def client(home: Path) -> TestClient:
    return TestClient(create_app(_settings(), rate_limit_per_minute=0))


def _job(**fields: object) -> dict:
    body = {"template_id": "acme-demo", "client_name": "Ada", "company_name": "Acme", "logo": "assets/logo.png"}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def _fields(response) -> set[str]:
    return {item["loc"][-1] for item in response.json()["detail"]}


def test_no_key_or_a_wrong_key_is_401(client: TestClient) -> None:
    for headers in ({}, {"X-API-Key": "nope"}, {"X-API-Key": KEY + "x"}, {"X-API-Key": ""}):
        for method, path, body in (("post", "/jobs", _job()), ("get", "/templates", None), ("get", "/jobs/abc", None)):
            r = client.request(method, path, json=body, headers=headers)
            assert r.status_code == 401, (headers, path, r.text)
            assert KEY not in r.text and OTHER_KEY not in r.text


def test_empty_key_list_refuses_everyone(home: Path) -> None:
    c = TestClient(create_app(LoomSettings(api_keys=None), rate_limit_per_minute=0))
    assert c.get("/templates", headers={"X-API-Key": ""}).status_code == 401
    assert c.get("/templates").status_code == 401


def test_templates_listed_with_their_fields(client: TestClient) -> None:
    r = client.get("/templates", headers={"X-API-Key": OTHER_KEY})
    assert r.status_code == 200
    (t,) = r.json()
    assert t["id"] == "acme-demo"
    assert t["placeholders"] == ["client_name", "company_name", "logo"]
    assert t["image_placeholders"] == ["logo"]
    assert "base_video_path" not in t


def test_missing_client_name_is_422_naming_it(client: TestClient) -> None:
    r = client.post("/jobs", json=_job(client_name=None), headers={"X-API-Key": KEY})
    assert r.status_code == 422
    assert _fields(r) == {"client_name"}
    assert "client_name" in r.json()["detail"][0]["msg"]


def test_every_bad_field_is_named_at_once(client: TestClient) -> None:
    r = client.post(
        "/jobs", json=_job(client_name=None, company_name="Acme\x07Corp", logo="  "), headers={"X-API-Key": KEY}
    )
    assert r.status_code == 422
    assert _fields(r) == {"client_name", "company_name", "logo"}
    msgs = " ".join(d["msg"] for d in r.json()["detail"])
    assert "U+0007" in msgs and "is empty" in msgs and "is missing" in msgs


def test_10000_character_name_is_422(client: TestClient) -> None:
    r = client.post("/jobs", json=_job(client_name="A" * 10_000), headers={"X-API-Key": KEY})
    assert r.status_code == 422 and _fields(r) == {"client_name"}
    assert "too long" in r.text and len(r.text) < 2000  # the value is not echoed back


def test_non_text_values_are_422(client: TestClient) -> None:
    r = client.post("/jobs", json=_job(company_name={"$gt": ""}), headers={"X-API-Key": KEY})
    assert r.status_code == 422 and "company_name" in _fields(r)


@pytest.mark.parametrize(
    "template_id", ["../../etc/passwd", "../acme-demo", "/etc/passwd", "acme-demo/../../x", "..", "a\\..\\b", ""]
)
def test_path_like_template_ids_are_refused(client: TestClient, template_id: str) -> None:
    r = client.post("/jobs", json=_job(template_id=template_id), headers={"X-API-Key": KEY})
    assert r.status_code == 422, r.text
    assert _fields(r) == {"template_id"}


def test_unknown_template_is_404(client: TestClient) -> None:
    r = client.post("/jobs", json=_job(template_id="nope"), headers={"X-API-Key": KEY})
    assert r.status_code == 404 and "template_id" in r.text


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://[::1]/hook",
        "http://[::ffff:169.254.169.254]/hook",
        "http://2852039166/hook",  # 169.254.169.254 written as one number
        "http://0x7f.1/hook",  # 127.0.0.1 in hex shorthand
        "file:///etc/passwd",
        "gopher://example.com/",
        "https://user:pw@example.com/hook",
    ],
)
def test_webhooks_into_internal_ranges_are_refused(client: TestClient, url: str) -> None:
    r = client.post("/jobs", json=_job(webhook_url=url), headers={"X-API-Key": KEY})
    assert r.status_code == 422, (url, r.text)
    assert _fields(r) == {"webhook_url"}


def test_logo_must_not_read_server_files(client: TestClient) -> None:
    for logo in ("/etc/passwd", "../../etc/passwd", "file:///etc/hosts", "http://169.254.169.254/logo.png"):
        r = client.post("/jobs", json=_job(logo=logo), headers={"X-API-Key": KEY})
        assert r.status_code == 422 and _fields(r) == {"logo"}, (logo, r.text)


def test_local_logos_resolve_inside_home_or_beside_the_video(home: Path, tmp_path: Path) -> None:
    from app.api import check_job_values
    from loom.template import load_template

    template = load_template(str(home / "templates" / "acme-demo.json"))
    values = check_job_values(template, {"client_name": "Ada", "company_name": "Acme", "logo": "assets/logo.png"})
    assert values == {"client_name": "Ada", "company_name": "Acme", "logo": str(home / "assets" / "logo.png")}
    beside = template.model_copy(update={"base_video_path": str(tmp_path / "media" / "base.mp4")})
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "logo.png").write_bytes(b"png")
    values = check_job_values(beside, {"client_name": "A", "company_name": "B", "logo": str(tmp_path / "media" / "logo.png")})
    assert values["logo"] == str(tmp_path / "media" / "logo.png")
    nested = {"data": {"client_name": "Ada", "company_name": "Acme", "logo": "assets/logo.png"}}
    assert check_job_values(template, nested)["client_name"] == "Ada"  # a nested "data" object works too
    with pytest.raises(Exception) as err:
        check_job_values(beside, {"client_name": "A", "company_name": "B", "logo": str(tmp_path / "media" / ".." / "x.png")})
    assert getattr(err.value, "status_code", None) == 422
    # Folders whose names merely start with a root's name are outside it: real PNGs there are refused.
    from PIL import Image

    for sibling in (tmp_path / f"{home.name}-other", tmp_path / "media2"):
        sibling.mkdir()
        Image.new("RGB", (4, 4), (200, 30, 30)).save(sibling / "logo.png")
    for logo in (
        str(tmp_path / f"{home.name}-other" / "logo.png"),
        f"../{home.name}-other/logo.png",
        str(tmp_path / "media2" / "logo.png"),
    ):
        with pytest.raises(Exception) as err:
            check_job_values(beside, {"client_name": "A", "company_name": "B", "logo": logo})
        assert getattr(err.value, "status_code", None) == 422, logo


def test_valid_job_reaches_the_orchestrator(client: TestClient) -> None:
    """Valid input gets past every check; with no Prefect API it is a 503 that says what to do."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # the fixture's closed port, also where Prefect's settings were already read (an earlier test
    # imported the flows): otherwise Prefect starts a temporary server of its own (~10 s)
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{_closed_port()}/api"}):
        r = client.post(
            "/jobs", json=_job(logo="https://cdn.example.com/acme.png", webhook_url="https://crm.example.com/hook"),
            headers={"X-API-Key": KEY},
        )
    # No Prefect API (or, when another test module's harness is up, no deployment): 503 saying what to do.
    assert r.status_code == 503 and ("PREFECT_API_URL" in r.text or "loom up" in r.text)


def test_rate_limit_per_key_is_429(home: Path) -> None:
    c = TestClient(create_app(_settings(), rate_limit_per_minute=3))
    codes = [c.get("/templates", headers={"X-API-Key": KEY}).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    limited = c.get("/templates", headers={"X-API-Key": KEY})
    assert int(limited.headers["Retry-After"]) >= 1
    assert c.get("/templates", headers={"X-API-Key": OTHER_KEY}).status_code == 200  # per key


def test_new_jobs_have_their_own_lower_limit(home: Path) -> None:
    c = TestClient(create_app(_settings(), rate_limit_per_minute=0, run_rate_limit_per_minute=2))
    codes = [c.post("/jobs", json=_job(client_name=None), headers={"X-API-Key": KEY}).status_code for _ in range(3)]
    assert codes == [422, 422, 429]
    assert c.get("/templates", headers={"X-API-Key": KEY}).status_code == 200  # reads go on


def test_unknown_or_malformed_job_ids_are_404(client: TestClient) -> None:
    for job_id in ("not-a-uuid", "00000000-0000-0000-0000-000000000000", "..%2F..%2Fetc%2Fpasswd"):
        assert client.get(f"/jobs/{job_id}", headers={"X-API-Key": KEY}).status_code == 404


def test_oversized_body_is_413(client: TestClient) -> None:
    r = client.post("/jobs", content=b"{" + b" " * 300_000 + b"}", headers={"X-API-Key": KEY, "Content-Type": "application/json"})
    assert r.status_code == 413


def test_campaign_sheet_must_not_be_a_server_file(client: TestClient, home: Path) -> None:
    for sheet in ("/etc/passwd", "../../etc/passwd", "http://10.0.0.1/sheet.csv"):
        r = client.post("/campaigns", json={"template_id": "acme-demo", "sheet": sheet}, headers={"X-API-Key": KEY})
        assert r.status_code == 422 and _fields(r) == {"sheet"}, (sheet, r.text)
    (home / "sheets").mkdir()
    (home / "sheets" / "no-company.csv").write_text("client_name,logo\nAda,assets/logo.png\n")
    r = client.post("/campaigns", json={"template_id": "acme-demo", "sheet": "sheets/no-company.csv"}, headers={"X-API-Key": KEY})
    assert r.status_code == 422 and "company_name" in r.text


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/jobs", "/jobs/{job_id}", "/templates", "/campaigns"} <= set(spec["paths"])
    assert "APIKeyHeader" in json.dumps(spec["components"]["securitySchemes"])


def test_secrets_are_scrubbed_from_errors(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    from app.jobs import scrub
    from loom.settings import reload_settings

    monkeypatch.setenv("LOOM_API_KEYS", f"{KEY},{OTHER_KEY}")
    monkeypatch.setenv("LOOM_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_live_elevenlabs_123")
    reload_settings()
    try:
        text = scrub(f"401 from https://api.elevenlabs.io with xi-api-key=sk_live_elevenlabs_123 ({OTHER_KEY}, {SECRET})")
    finally:
        monkeypatch.undo()
        reload_settings()
    assert "sk_live" not in text and OTHER_KEY not in text and SECRET not in text and text.count("***") == 3


def test_loom_serve_runs_this_app(home: Path) -> None:
    """`loom serve --port P` serves the API: docs open, requests without a key are refused."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    port = _closed_port()
    env = {**os.environ, "LOOM_API_KEYS": KEY, "LOOM_HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.25)
        assert httpx.get(f"{base}/docs").status_code == 200
        assert httpx.get(f"{base}/templates").status_code == 401
        listed = httpx.get(f"{base}/templates", headers={"X-API-Key": KEY})
        assert listed.status_code == 200 and listed.json()[0]["id"] == "acme-demo"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert KEY.encode() not in err  # the key never reaches the server's log


@pytest.mark.parametrize(
    ("sheet", "content", "expected"),
    [
        ("sheets/folder.csv", None, "is a folder"),
        ("sheets/empty.csv", b"", "is empty"),
        ("sheets/header-only.csv", b"client_name,company_name,logo\n", "has no rows"),
        ("gs://other-bucket/sheet.csv", None, "names a bucket this server does not read"),
        ("http://127.0.0.1:9/sheet.csv", None, "127.0.0.1 is a loopback address"),
        ("sheets/bomb.xlsx", b"PK\x03\x04 not really a zip", "not a readable XLSX"),
    ],
)
def test_campaign_sheets_that_cannot_work_are_422_naming_sheet(client: TestClient, home: Path, sheet: str, content: bytes | None, expected: str) -> None:
    (home / "sheets").mkdir(exist_ok=True)
    if sheet == "sheets/folder.csv":
        (home / sheet).mkdir()
    elif content is not None:
        (home / sheet).write_bytes(content)
    r = client.post("/campaigns", json={"template_id": "acme-demo", "sheet": sheet}, headers={"X-API-Key": KEY})
    assert r.status_code == 422, r.text
    assert _fields(r) == {"sheet"} and expected in r.json()["detail"][0]["msg"], r.text


def test_campaign_sheet_that_does_not_answer_in_time_is_422(home: Path) -> None:
    """A storage call that hangs does not hold the request: the sheet is named after the wait."""
    import app.api as api

    with pytest.raises(InputError) as err:
        api.check_sheet_columns(_template(home), "https://example.invalid/s.csv", within_s=0.0)
    assert err.value.field == "sheet" and "could not be read within" in err.value.problem


def _template(home: Path):
    from loom.template import load_template

    return load_template(str(home / "templates" / "acme-demo.json"))


def test_template_ids_with_a_trailing_newline_are_refused(client: TestClient) -> None:
    r = client.post("/jobs", json=_job(template_id="acme-demo\n"), headers={"X-API-Key": KEY})
    assert r.status_code == 422 and _fields(r) == {"template_id"}
