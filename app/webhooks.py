"""Webhooks: signed JSON POSTs to integrations, never to the server's own network.

A job's ``webhook_url`` is checked twice: when the job is created (so a bad URL is a 4xx at
once) and again right before each delivery attempt, after resolving the host, because DNS can
change in between (rebinding). Delivery connects to the very address that was checked.

Signature: ``X-Loom-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` with
``LOOM_WEBHOOK_SECRET`` — the body is signed as sent, so receivers verify the raw bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from loom.addresses import (  # noqa: F401  (blocked_reason, parse_allowed_hosts: this module's own names too)
    Resolver,
    blocked_reason,
    internal_name,
    is_allowed,
    parse_allowed_hosts,
    resolve_host,
)
from loom.errors import InputError
from loom.fetch import Hop as Destination
from loom.fetch import pinned_request

log = logging.getLogger("loom.webhooks")

SIGNATURE_HEADER = "X-Loom-Signature"
SIGNATURE_TOLERANCE_S = 300
MAX_URL_CHARS = 2048


# ---------------------------------------------------------------- signing


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``X-Loom-Signature`` value for ``body`` sent at ``timestamp`` (now by default)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(body: bytes, header: str, secret: str, tolerance_s: int = SIGNATURE_TOLERANCE_S, now: float | None = None) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and is fresh (what a receiver runs)."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - t) > tolerance_s:
        return False  # an old signature replayed
    expected = sign(body, secret, t).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, v) for v in parts.get("v1", []))


# ---------------------------------------------------------------- where a webhook may go


def _split(url: str) -> tuple[str, str, int]:
    if not isinstance(url, str) or not url:
        raise InputError("webhook_url", "is empty", "give an https:// URL")
    if len(url) > MAX_URL_CHARS:
        raise InputError("webhook_url", f"{len(url)} characters is too long", f"use at most {MAX_URL_CHARS}")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise InputError("webhook_url", "contains spaces or control characters", "URL-encode them")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InputError("webhook_url", f"scheme {parts.scheme or '(none)'!r} is not allowed", "use an https:// URL")
    if parts.username or parts.password:
        raise InputError("webhook_url", "must not carry a user name or password", "authenticate with the signature instead")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise InputError("webhook_url", "has no host", "give a full URL like https://example.com/hooks/loom")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InputError("webhook_url", "has an invalid port", "use a port between 1 and 65535") from None
    return parts.scheme, host, port


def check_destination(
    url: str,
    allowed_hosts: set[str],
    *,
    resolver: Resolver = resolve_host,
    require_resolution: bool = True,
) -> Destination:
    """Refuse URLs that point into loopback, private, link-local or metadata ranges.

    Hosts in ``allowed_hosts`` (``host`` or ``host:port``) skip the address check. With
    ``require_resolution=False`` (job creation) a name that does not resolve yet passes; it is
    resolved and checked again before every delivery.
    """
    _scheme, host, port = _split(url)
    if is_allowed(host, port, allowed_hosts):
        return Destination(url=url, host=host, port=port, address=None)
    if internal_name(host):
        raise InputError("webhook_url", f"{host} is an internal host", "use a public host, or list it in LOOM_WEBHOOK_ALLOWED_HOSTS")
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError):
        if require_resolution:
            raise InputError("webhook_url", f"{host} does not resolve", "check the host name") from None
        return Destination(url=url, host=host, port=port, address=None)
    if not addresses:
        raise InputError("webhook_url", f"{host} does not resolve", "check the host name")
    for address in addresses:
        reason = blocked_reason(address)
        if reason:
            shown = host if host == address else f"{host} ({address})"
            raise InputError(
                "webhook_url", f"{shown} is {reason}", "use a public host, or list it in LOOM_WEBHOOK_ALLOWED_HOSTS"
            )
    return Destination(url=url, host=host, port=port, address=addresses[0])


# ---------------------------------------------------------------- delivery


@dataclass
class DeliveryResult:
    delivered: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None


def redact_url(url: str) -> str:
    """Scheme, host and path only: query strings of webhook URLs often hold tokens."""
    try:
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))
    except ValueError:
        return "(unparseable URL)"


def _pinned_request(client: httpx.Client, dest: Destination, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST to the checked address while keeping the Host header and TLS name of the URL."""
    return client.send(pinned_request(client, "POST", dest, content=body, headers=headers))


RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


def deliver(
    url: str,
    payload: dict[str, object],
    *,
    secret: str,
    allowed_hosts: set[str],
    attempts: int = 5,
    backoff_s: float = 1.0,
    timeout_s: float = 10.0,
    resolver: Resolver = resolve_host,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryResult:
    """POST ``payload`` signed to ``url``; retry network errors and 5xx/429 with exponential backoff.

    The destination is re-checked before every attempt. A refused destination or a 4xx answer is
    final: retrying cannot fix it. Redirects are not followed (they could lead inside).
    """
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    last = DeliveryResult(delivered=False, attempts=0)
    with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
        for attempt in range(1, attempts + 1):
            last.attempts = attempt
            try:
                dest = check_destination(url, allowed_hosts, resolver=resolver, require_resolution=True)
            except InputError as exc:
                last.error = exc.line()
                if "does not resolve" not in exc.problem:
                    log.warning("webhook to %s refused: %s", redact_url(url), exc.problem)
                    return last
            else:
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "better-loom-webhooks/1",
                    SIGNATURE_HEADER: sign(body, secret),
                }
                try:
                    response = _pinned_request(client, dest, body, headers)
                    last.status_code = response.status_code
                    if 200 <= response.status_code < 300:
                        last.delivered, last.error = True, None
                        return last
                    last.error = f"HTTP {response.status_code}"
                    if response.status_code not in RETRY_STATUS:
                        log.warning("webhook to %s answered %s; not retried", redact_url(url), response.status_code)
                        return last
                except httpx.HTTPError as exc:
                    last.error = f"{type(exc).__name__}"
            if attempt < attempts:
                delay = backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random())  # jitter spreads retries
                log.info("webhook to %s failed (%s); retry %d in %.1fs", redact_url(url), last.error, attempt, delay)
                sleep(delay)
    log.warning("webhook to %s gave up after %d attempts: %s", redact_url(url), last.attempts, last.error)
    return last
