"""Links a person opens in a browser: every artifact, manifest, API answer and QA record names its
files through here, never as a ``file://`` path or a ``gs://`` URI that no browser opens.

- ``gs://`` files: a V4 signed https URL (``LOOM_LINK_TTL_S``); against the GCS emulator
  (``STORAGE_EMULATOR_HOST``) the same signed URL on the emulator's host.
- local files: ``<LOOM_PUBLIC_URL>/media/<token>/<name>``, served by ``loom serve`` and the web
  server of ``loom up`` (``app.media_routes``, with byte ranges). The token names the file and an
  expiry and carries an HMAC of both, so the server serves only what was signed, until it expires.
- pages (a campaign's): ``<LOOM_PUBLIC_URL>/campaigns/<id>?exp=..&sig=..``, signed the same way.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import logging
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote

from loom import storage
from loom.settings import get_settings

log = logging.getLogger("loom.links")

SECRET_NAME = "links.key"


class BadLink(ValueError):
    """A token that was not signed here, was tampered with, or has expired."""


# ---------------------------------------------------------------- the signing key


_secret_cache: dict[str, bytes] = {}


def link_secret() -> bytes:
    """``LOOM_LINK_SECRET``, else a random key made once and kept under ``<home>/secrets`` (so the
    workers that write links and the server that checks them agree without configuration)."""
    settings = get_settings()
    if settings.link_secret is not None:
        return settings.link_secret.get_secret_value().encode()
    uri = storage.join(storage.home(), "secrets", SECRET_NAME)
    if uri in _secret_cache:
        return _secret_cache[uri]
    if storage.is_remote(uri):
        if not storage.exists(uri):
            storage.write_text(uri, secrets.token_hex(32))
        key = storage.read_text(uri).strip().encode()
    else:
        path = Path(uri.removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: two processes starting at once keep one key, the first one's
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
        except FileExistsError:
            pass
        for _ in range(50):  # the other process may still be writing it
            key = path.read_text().strip().encode()
            if key:
                break
            time.sleep(0.01)
    _secret_cache[uri] = key
    return key


def _sign(*parts: str) -> str:
    mac = hmac.new(link_secret(), "\0".join(parts).encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:18]).decode().rstrip("=")


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode().rstrip("=")


def _unb64(text: str) -> str:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise BadLink("not a link token") from None


def expiry(ttl_s: int | None = None) -> int:
    return int(time.time()) + (ttl_s if ttl_s is not None else get_settings().link_ttl_s)


def public_base() -> str:
    return get_settings().public_url.rstrip("/")


# ---------------------------------------------------------------- local files


def media_token(path: str, expires: int) -> str:
    """``<path>.<expiry>.<signature>``: names an absolute local path until ``expires`` (unix time)."""
    return f"{_b64(path)}.{expires}.{_sign('media', path, str(expires))}"


def open_media_token(token: str, now: float | None = None) -> str:
    """The local path a token names, or ``BadLink``."""
    try:
        encoded, expires_text, signature = token.split(".")
        expires = int(expires_text)
    except ValueError:
        raise BadLink("not a link token") from None
    path = _unb64(encoded)
    if not hmac.compare_digest(signature, _sign("media", path, str(expires))):
        raise BadLink("the link's signature does not match")
    if expires < (time.time() if now is None else now):
        raise BadLink("the link has expired")
    return path


def local_media_url(path: str, ttl_s: int | None = None) -> str:
    path = os.path.abspath(path.removeprefix("file://"))
    return f"{public_base()}/media/{media_token(path, expiry(ttl_s))}/{quote(os.path.basename(path))}"


# ---------------------------------------------------------------- pages


def page_signature(kind: str, name: str, expires: int) -> str:
    return _sign("page", kind, name, str(expires))


def check_page(kind: str, name: str, expires: int, signature: str, now: float | None = None) -> None:
    if not hmac.compare_digest(signature or "", page_signature(kind, name, expires)):
        raise BadLink("the link's signature does not match")
    if expires < (time.time() if now is None else now):
        raise BadLink("the link has expired")


def campaign_page_url(campaign_id: str, ttl_s: int | None = None) -> str:
    expires = expiry(ttl_s)
    return f"{public_base()}/campaigns/{campaign_id}?exp={expires}&sig={page_signature('campaign', campaign_id, expires)}"


def share_page_url(token: str) -> str:
    return f"{public_base()}/v/{token}"


# ---------------------------------------------------------------- gs://


def signed_gcs_url(uri: str, ttl: dt.timedelta, credentials=None) -> str | None:  # noqa: ANN001
    """A V4 signed GET URL; with keyless credentials (Cloud Run) signing goes through IAM signBlob.
    Against the emulator the URL points at the emulator's host (it serves the same paths)."""
    # Google's auth and storage clients (~0.5 s) only when a gs:// file is linked
    import google.auth
    import google.auth.transport.requests
    from google.cloud import storage as gcs

    bucket, _, name = uri.split("://", 1)[1].partition("/")
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    endpoint = {"api_access_endpoint": emulator.rstrip("/")} if emulator else {}
    try:
        if credentials is None:
            credentials = _default_credentials()
        if credentials is None:
            return None
        blob = gcs.Client(project="loom", credentials=credentials).bucket(bucket).blob(name)
        if hasattr(credentials, "sign_bytes"):
            return blob.generate_signed_url(version="v4", expiration=ttl, method="GET", **endpoint)
        credentials.refresh(google.auth.transport.requests.Request())
        return blob.generate_signed_url(
            version="v4",
            expiration=ttl,
            method="GET",
            service_account_email=credentials.service_account_email,
            access_token=credentials.token,
            **endpoint,
        )
    except Exception as exc:  # no credentials that can sign: the caller decides what to show
        log.warning("cannot sign a URL for %s: %s", uri, type(exc).__name__)
        return None


@functools.lru_cache(maxsize=1)
def _default_credentials():  # noqa: ANN202
    """The process's Google credentials, found once (a campaign page signs a link per row)."""
    import google.auth

    try:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except Exception as exc:  # none here: remembered, so a page of links does not look again per link
        log.warning("no Google credentials to sign links with: %s", type(exc).__name__)
        return None
    return credentials


def emulator_media_url(uri: str) -> str | None:
    """The emulator's unsigned media URL (a test machine without signing credentials)."""
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if not emulator:
        return None
    bucket, _, name = uri.split("://", 1)[1].partition("/")
    return f"{emulator.rstrip('/')}/download/storage/v1/b/{bucket}/o/{quote(name, safe='')}?alt=media"


# ---------------------------------------------------------------- one door


def browser_url(uri: str, ttl_s: int | None = None) -> str:
    """A URL a browser opens for a stored file (see the module's docstring). A ``gs://`` file that
    cannot be signed (no signing credentials) falls back to the Cloud console's authenticated link."""
    if uri.startswith(("http://", "https://")):
        return uri
    ttl = ttl_s if ttl_s is not None else get_settings().link_ttl_s
    if uri.startswith(("gs://", "gcs://")):
        signed = signed_gcs_url(uri, dt.timedelta(seconds=ttl))
        if signed:
            return signed
        return emulator_media_url(uri) or "https://storage.cloud.google.com/" + quote(uri.split("://", 1)[1])
    return local_media_url(uri, ttl)
