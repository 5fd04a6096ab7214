"""API keys (``X-API-Key``, compared in constant time) and a per-key rate limit.

Keys come from ``LOOM_API_KEYS`` (comma-separated). A request is identified by a short hash of
its key, never by the key itself, so nothing downstream (logs, job records) holds a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from dataclasses import dataclass, field

from fastapi import HTTPException, Request, status
from fastapi.security import APIKeyHeader

API_KEY_HEADER = "X-API-Key"
DEFAULT_RATE_PER_MINUTE = 600  # any request (status polls are cheap)
DEFAULT_RUN_RATE_PER_MINUTE = 60  # requests that start runs (they cost compute)

api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="One of LOOM_API_KEYS")


def parse_keys(text: str | None) -> list[str]:
    return [k.strip() for k in (text or "").split(",") if k.strip()]


def key_id(key: str) -> str:
    """A stable, non-secret name for a key (for rate limits and job ownership)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def match_key(given: str | None, keys: list[str]) -> str | None:
    """The key id if ``given`` is one of ``keys``; every key is compared, in constant time each."""
    if not given:
        return None
    found = None
    given_b = given.encode()
    for key in keys:
        if hmac.compare_digest(given_b, key.encode()):
            found = key
    return key_id(found) if found is not None else None


@dataclass
class RateLimiter:
    """A token bucket per key: ``per_minute`` requests, refilled continuously, bursts up to the same."""

    per_minute: int = DEFAULT_RATE_PER_MINUTE
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key id -> (tokens, at)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, who: str, now: float | None = None) -> float:
        """0 if allowed, else the seconds until the next request would be."""
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, at = self._buckets.get(who, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - at) * rate)
            if tokens >= 1.0:
                self._buckets[who] = (tokens - 1.0, now)
                return 0.0
            self._buckets[who] = (tokens, now)
            return (1.0 - tokens) / rate


def _limit(request: Request, who: str, limiter: RateLimiter, what: str) -> None:
    wait = limiter.take(who)
    if wait > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"rate limit of {limiter.per_minute} {what} per minute for this key reached; retry later",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


def require_key(request: Request, given: str | None, starts_run: bool = False) -> str:
    """Check the key and its rate limits (one for every request, one for requests that start runs).

    Returns the caller's key id.
    """
    keys: list[str] = request.app.state.api_keys
    who = match_key(given, keys)
    if who is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"missing or invalid API key: send one of LOOM_API_KEYS in the {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )
    _limit(request, who, request.app.state.rate_limiter, "requests")
    if starts_run:
        _limit(request, who, request.app.state.run_rate_limiter, "new jobs")
    return who
