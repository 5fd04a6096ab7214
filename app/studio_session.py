"""The studio's sign-in: the page asks once for an API key and keeps a session cookie.

The cookie holds the key's id (never the key), an expiry and an HMAC over both, keyed with a
secret derived from the configured keys and a random value of this process: a cookie from another
server, or from before a restart or a change of keys, is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from fastapi import HTTPException, Request, status

from app.auth import API_KEY_HEADER, match_key

COOKIE = "loom_studio"
SESSION_S = 12 * 3600


class StudioSessions:
    def __init__(self, keys: list[str], lifetime_s: int = SESSION_S) -> None:
        self.keys = keys
        self.lifetime_s = lifetime_s
        self._secret = hashlib.sha256(("\n".join(keys) + secrets.token_hex(16)).encode()).digest()

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()

    def open(self, key: str | None) -> str | None:
        """A cookie value for a valid key, else None."""
        who = match_key(key, self.keys)
        if who is None:
            return None
        payload = f"{who}.{int(time.time()) + self.lifetime_s}"
        return f"{payload}.{self._sign(payload)}"

    def who(self, cookie: str | None) -> str | None:
        """The key id a cookie was opened for, if it is ours and fresh."""
        if not cookie or cookie.count(".") != 2:
            return None
        who, expiry, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(f"{who}.{expiry}")):
            return None
        if not expiry.isdigit() or int(expiry) < time.time():
            return None
        return who


def studio_caller(request: Request) -> str:
    """The caller of a studio route: a session cookie or an ``X-API-Key`` (401 otherwise)."""
    sessions: StudioSessions = request.app.state.studio_sessions
    who = sessions.who(request.cookies.get(COOKIE)) or match_key(request.headers.get(API_KEY_HEADER), sessions.keys)
    if who is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="sign in: open /studio and give one of LOOM_API_KEYS",
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )
    return who
