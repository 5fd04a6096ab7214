"""A gs:// home (GCS emulator): every link a person is shown is a V4 signed URL that opens, the
video answering byte ranges with a video type, the poster and preview as pictures."""

from __future__ import annotations

import io
import os
import json
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from PIL import Image

from tests.gcs_fixtures import gcs_bucket  # noqa: F401 (fixture)
from testkit.campaign_inputs import write_template


def _key_file(folder: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    info = {
        "type": "service_account", "project_id": "loom-test", "private_key_id": "k1", "private_key": pem,
        "client_email": "loom-links@loom-test.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = folder / "service-account.json"
    path.write_text(json.dumps(info))
    return path


def test_a_gs_home_gets_signed_urls_that_open(gcs_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from loom import links, storage
    from loom.pipeline import personalize
    from loom.settings import reload_settings

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(_key_file(tmp_path)))
    monkeypatch.setenv("LOOM_HOME", f"{gcs_bucket}/home")
    monkeypatch.setenv("LOOM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ELEVENLABS_API_KEY", raising=False)
    links._default_credentials.cache_clear()
    reload_settings()
    try:
        template = write_template(tmp_path / "tpl", size=(320, 240))
        result = personalize(str(template), {"client_name": "Ada", "company_name": "Acme"}, f"{gcs_bucket}/out/ada.mp4")
        for name in ("poster_uri", "gif_uri", "email_uri", "preview_uri"):
            assert storage.exists(getattr(result, name)), name

        video = result.links["video"]
        parts = urlsplit(video)
        query = dict(parse_qsl(parts.query))
        assert f"{parts.scheme}://{parts.netloc}" == os.environ["STORAGE_EMULATOR_HOST"]
        assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256" and query["X-Goog-Credential"].startswith("loom-links@")
        whole = storage.read_bytes(result.output_uri)
        part = httpx.get(video, headers={"Range": "bytes=10-109"})
        assert part.status_code == 206 and part.headers["content-type"] == "video/mp4" and part.content == whole[10:110]
        for name, kind in (("poster", "image/jpeg"), ("preview", "image/png"), ("gif", "image/gif")):
            resp = httpx.get(result.links[name])
            assert resp.status_code == 200 and resp.headers["content-type"] == kind, name
            assert Image.open(io.BytesIO(resp.content)).width > 0
        assert "X-Goog-Signature" in result.links["email"]
        record = json.loads(storage.read_text(result.record_uri))
        assert record["links"]["video"].startswith(os.environ["STORAGE_EMULATOR_HOST"])
    finally:
        links._default_credentials.cache_clear()
        monkeypatch.undo()
        reload_settings()


def test_share_records_and_views_on_a_gs_home(gcs_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """An object store cannot append: each view is an object of its own, read back in order."""
    from loom import shares
    from loom.settings import reload_settings

    monkeypatch.setenv("LOOM_HOME", f"{gcs_bucket}/share-home")
    reload_settings()
    try:
        share = shares.create_share(f"{gcs_bucket}/out/x.mp4", "Ada", "t", "k")
        assert shares.load_share(share.token).output_uri == f"{gcs_bucket}/out/x.mp4"
        for agent in ("first-agent", "second-agent"):
            shares.record_view(share.token, agent)
        assert [v.user_agent for v in shares.views(share.token)] == ["first-agent", "second-agent"]
        shares.revoke_share(share.token)
        assert shares.load_share(share.token).revoked and len(shares.views(share.token)) == 2
    finally:
        monkeypatch.undo()
        reload_settings()
