"""Output URLs of finished jobs (signed for gs://) and the job records the API keeps."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest

from app import jobs
from tests.gcs_fixtures import gcs_bucket  # noqa: F401 (fixture)


def _service_account():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "loom-test",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "loom-api@loom-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return service_account.Credentials.from_service_account_info(info), key.public_key()


def test_gs_output_gets_a_v4_url_signed_by_the_service_account(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    credentials, public_key = _service_account()
    url = jobs.signed_gcs_url("gs://loom-out/outputs/acme demo/ab12.mp4", dt.timedelta(hours=2), credentials=credentials)
    assert url is not None
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    assert parts.netloc == "storage.googleapis.com" and parts.path == "/loom-out/outputs/acme%20demo/ab12.mp4"
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256" and query["X-Goog-Expires"] == "7200"
    assert query["X-Goog-Credential"].startswith("loom-api@loom-test.iam.gserviceaccount.com/")

    # Rebuild V4's string-to-sign and check the signature with the account's public key.
    signed_query = sorted((k, v) for k, v in parse_qsl(parts.query) if k != "X-Goog-Signature")
    canonical_query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in signed_query)
    canonical = "\n".join(["GET", parts.path, canonical_query, f"host:{parts.netloc}", "", "host", "UNSIGNED-PAYLOAD"])
    scope = query["X-Goog-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["GOOG4-RSA-SHA256", query["X-Goog-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()])
    public_key.verify(bytes.fromhex(query["X-Goog-Signature"]), to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())


def test_without_signing_credentials_the_url_is_absent_not_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    assert jobs.signed_gcs_url("gs://b/x.mp4", credentials=AnonymousCredentials()) is None


def test_gs_output_on_the_emulator_is_a_fetchable_url(gcs_bucket: str) -> None:  # noqa: F811
    from loom import storage

    uri = f"{gcs_bucket}/outputs/demo/a b.mp4"
    storage.write_bytes(uri, b"video bytes")
    url = jobs.output_url(uri)
    assert url is not None and httpx.get(url).content == b"video bytes"


def test_local_output_is_a_signed_link_to_this_server(loom_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loom import links

    video = tmp_path / "out.mp4"
    video.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    url = jobs.output_url("out.mp4")
    assert url is not None and url.startswith(links.public_base() + "/media/") and url.endswith("/out.mp4")
    assert links.open_media_token(url.split("/")[-2]) == str(video)
    assert links.open_media_token(jobs.output_url(f"file://{video}").split("/")[-2]) == str(video)


def test_outputs_are_read_from_the_runs_link_artifacts() -> None:
    from types import SimpleNamespace as Artifact

    arts = [
        Artifact(type="progress", data=100.0),
        Artifact(type="markdown", data="# Inputs\n![preview](file:///h/outputs/t/k.preview.png)"),
        Artifact(type="markdown", data="[gs://b/outputs/t/k 1.mp4](https://storage.cloud.google.com/b/outputs/t/k%201.mp4)"),
    ]
    assert jobs._output_from_artifacts(arts, "recipient") == "gs://b/outputs/t/k 1.mp4"
    assert jobs._output_from_artifacts(arts, "campaign") is None
    local = [Artifact(type="markdown", data="[/h/outputs/t/k.mp4](file:///h/outputs/t/k.mp4)")]
    assert jobs._output_from_artifacts(local, "recipient") == "/h/outputs/t/k.mp4"
    assert jobs._progress_from_artifacts(arts) == 1.0


def test_job_records_are_named_by_uuid_only(loom_home: Path) -> None:
    store = jobs.JobStore()
    with pytest.raises(jobs.JobNotFound):
        store.load("../../etc/passwd")
    with pytest.raises(ValueError):
        store.save(jobs.JobRecord(id="../../x", kind="recipient", template_id="t", owner="o", created_at=dt.datetime.now()))
    assert not (loom_home.parent / "x.json").exists()


def test_pending_webhooks_are_resumed_after_a_restart(loom_home: Path) -> None:
    import uuid

    store = jobs.JobStore()
    now = dt.datetime.now(dt.timezone.utc)
    pending = jobs.JobRecord(id=str(uuid.uuid4()), kind="recipient", template_id="t", owner="o", created_at=now,
                             webhook_url="https://crm.example.com/h?token=t0k3n", webhook_state="pending")
    done = pending.model_copy(update={"id": str(uuid.uuid4()), "webhook_state": "delivered"})
    store.save(pending)
    store.save(done)
    assert [r.id for r in jobs.JobStore().pending_webhooks()] == [pending.id]

    watcher = jobs.WebhookWatcher(jobs.JobStore(), send=lambda record, view: (True, 1, None), poll_s=3600)
    watcher._run = lambda: None  # resume only: no polling thread work in this test
    watcher.resume()
    assert set(watcher._pending) == {pending.id}
    record = json.loads((loom_home / "jobs" / f"{pending.id}.json").read_text())
    assert record["owner"] == "o" and "X-API-Key" not in json.dumps(record)


@pytest.mark.parametrize(
    "message,line",
    [
        ("Flow run encountered an exception: InputError: base_video_path: x.mp4 is not a readable video (check the file)",
         "base_video_path: x.mp4 is not a readable video (check the file)"),
        ("Flow run encountered an exception: RuntimeError: boom\nmore", "RuntimeError: boom more"),
        (None, "the run ended Crashed"),
    ],
)
def test_run_errors_read_as_one_line(message: str | None, line: str) -> None:
    assert jobs.run_error(message, "Crashed") == line


@pytest.mark.parametrize(
    "state,status",
    [("SCHEDULED", "scheduled"), ("PENDING", "scheduled"), ("RUNNING", "running"), ("PAUSED", "running"),
     ("COMPLETED", "completed"), ("FAILED", "failed"), ("CRASHED", "failed"), ("CANCELLED", "failed")],
)
def test_prefect_states_fold_into_four(state: str, status: str) -> None:
    assert jobs.status_of(state) == status
