"""Share pages: one unguessable, revocable token per video (``/v/<token>``), and the views it got.

A share is a small JSON record under ``<home>/shares/`` naming the video, its poster and GIF and
the recipient; the token is 144 random bits, never derived from anything a person could guess.
Revoking keeps the record (and its views) but the page answers 410 from then on. Views are one
JSON line each: appended to ``<token>.views.jsonl`` in a local home, one object each on gs://
(an object store cannot append).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets

from pydantic import BaseModel

from loom import storage
from loom.errors import InputError

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
MAX_USER_AGENT = 400

# Placeholders that name the person a video is for, best first.
NAME_KEYS = ("first_name", "client_name", "name", "full_name", "contact_name", "recipient")


class Share(BaseModel):
    token: str
    output_uri: str
    poster_uri: str | None = None
    gif_uri: str | None = None
    recipient: str
    template_id: str
    recipient_key: str
    record_uri: str | None = None
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class View(BaseModel):
    at: dt.datetime
    user_agent: str = ""


def recipient_name(values: dict[str, str]) -> str:
    """Who the video is for, as a page title or an alt text shows it."""
    for key in NAME_KEYS:
        if values.get(key):
            return values[key]
    for key, value in values.items():
        if "name" in key.lower() and "company" not in key.lower() and value:
            return value
    return next((v for v in values.values() if v and not storage.is_remote(v)), "you")


def _root() -> str:
    return storage.join(storage.home(), "shares")


def _check_token(token: str) -> str:
    if not TOKEN_RE.match(token or ""):
        raise InputError("token", "is not a share token", "copy the whole link")
    return token


def _record_uri(token: str) -> str:
    return storage.join(_root(), f"{_check_token(token)}.json")


def new_token() -> str:
    """144 random bits, URL-safe, never starting with '-' (a token is also typed on the command line,
    where a leading '-' reads as an option: ``loom revoke-share -Kx...``)."""
    while (token := secrets.token_urlsafe(18)).startswith("-"):
        pass
    return token


def create_share(
    output_uri: str,
    recipient: str,
    template_id: str,
    recipient_key: str,
    poster_uri: str | None = None,
    gif_uri: str | None = None,
    record_uri: str | None = None,
) -> Share:
    share = Share(
        token=new_token(),
        output_uri=output_uri,
        poster_uri=poster_uri,
        gif_uri=gif_uri,
        recipient=recipient,
        template_id=template_id,
        recipient_key=recipient_key,
        record_uri=record_uri,
        created_at=dt.datetime.now(dt.timezone.utc),
    )
    storage.write_text(_record_uri(share.token), share.model_dump_json(indent=2))
    return share


def load_share(token: str) -> Share | None:
    """The share, revoked or not; None when there is none (or the token is malformed)."""
    try:
        uri = _record_uri(token)
    except InputError:
        return None
    if not storage.exists(uri):
        return None
    return Share.model_validate_json(storage.read_bytes(uri))


def revoke_share(token: str) -> Share:
    share = load_share(token)
    if share is None:
        raise InputError("token", f"no share {token!r}", "check the link's last part")
    if share.revoked_at is None:
        share.revoked_at = dt.datetime.now(dt.timezone.utc)
        storage.write_text(_record_uri(token), share.model_dump_json(indent=2))
    return share


def _views_uri(token: str) -> str:
    return storage.join(_root(), f"{_check_token(token)}.views.jsonl")


def record_view(token: str, user_agent: str) -> View:
    view = View(at=dt.datetime.now(dt.timezone.utc), user_agent=(user_agent or "")[:MAX_USER_AGENT])
    line = view.model_dump_json() + "\n"
    if storage.is_remote(_root()):
        stamp = view.at.strftime("%Y%m%dT%H%M%S%f")
        storage.write_text(storage.join(_root(), "views", _check_token(token), f"{stamp}-{secrets.token_hex(4)}.json"), line)
    else:
        uri = _views_uri(token)
        storage.open_uri(storage.join(_root(), ".keep"), "a").close()  # the folder exists
        storage.append_text(uri, line)
    return view


def views(token: str) -> list[View]:
    """Every view of a share, oldest first."""
    if storage.is_remote(_root()):
        lines = [storage.read_text(u) for u in storage.list_dir(storage.join(_root(), "views", _check_token(token)))]
    else:
        uri = _views_uri(token)
        lines = storage.read_text(uri).splitlines() if storage.exists(uri) else []
    out = []
    for line in lines:
        try:
            out.append(View.model_validate(json.loads(line)))
        except ValueError:
            continue  # a line cut short by a crash
    return sorted(out, key=lambda v: v.at)
