"""The one way the server reads an http(s) URL a client named: logos, sheets, remote base videos.

Each hop is checked before it is contacted: the host is resolved once, every address it resolves
to must be public (``loom.addresses``), and the connection goes to the checked address (the URL's
name is kept for the Host header and TLS). Redirects are followed only by checking the next hop
the same way. Time and size are bounded per kind of file, and the body is streamed so the byte
cap holds before memory is spent. ``gs://`` and local files never come here (fsspec and ``os``).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import httpx

from loom.addresses import Resolver, blocked_reason, internal_name, is_allowed, parse_allowed_hosts, resolve_host

MAX_URL_CHARS = 2048
MAX_REDIRECTS = 3
ALLOW_FIX = "use a public host, or list it in LOOM_INPUT_ALLOWED_HOSTS"


@dataclass(frozen=True)
class FetchLimits:
    """How much one fetch may cost: bytes, and seconds to connect, between reads and in all."""

    max_bytes: int
    total_s: float
    connect_s: float = 5.0
    read_s: float = 10.0
    # A server that drips bytes holds a worker as long as the total allows: past ``grace_s`` the
    # average rate must reach ``min_rate`` bytes a second (any real file host is far faster).
    min_rate: float = 32 * 1024
    grace_s: float = 1.5


LIMITS: dict[str, FetchLimits] = {
    "logo": FetchLimits(max_bytes=20 * 2**20, total_s=15.0, connect_s=3.0, read_s=1.5),
    "sheet": FetchLimits(max_bytes=20 * 2**20, total_s=60.0, connect_s=3.0, read_s=5.0),
    "video": FetchLimits(max_bytes=4 * 2**30, total_s=900.0, read_s=30.0, min_rate=256 * 1024, grace_s=5.0),
    "file": FetchLimits(max_bytes=64 * 2**20, total_s=60.0),
}


class FetchError(OSError):
    """A URL that was refused or could not be read, said as a problem and its fix (an OSError: a
    file that cannot be read, to every caller that already handles one)."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem} ({fix})")
        self.problem, self.fix = problem, fix


class TooLarge(FetchError):
    """Over the byte cap of its kind (from ``content-length``, or counted while streaming)."""


@dataclass(frozen=True)
class Hop:
    """A checked URL: where to connect (``address``; None for an allowed host, connected by name)."""

    url: str
    host: str
    port: int
    address: str | None


def check_url(url: str, allowed_hosts: set[str], resolver: Resolver = resolve_host) -> Hop:
    """Refuse a URL into loopback, private, link-local or metadata ranges (after resolving it)."""
    if len(url) > MAX_URL_CHARS:
        raise FetchError(f"a URL of {len(url)} characters is too long", f"use at most {MAX_URL_CHARS}")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise FetchError("the URL contains spaces or control characters", "URL-encode them")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"scheme {parts.scheme or '(none)'!r} is not fetched", "give an https:// URL")
    if parts.username or parts.password:
        raise FetchError("the URL carries a user name or password", "give a URL without credentials")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise FetchError("the URL has no host", "give a full URL like https://example.com/logo.png")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError("the URL has an invalid port", "use a port between 1 and 65535") from None
    if is_allowed(host, port, allowed_hosts):
        return Hop(url=url, host=host, port=port, address=None)
    if internal_name(host):
        raise FetchError(f"{host} is an internal host", ALLOW_FIX)
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError):
        raise FetchError(f"{host} does not resolve", "check the host name") from None
    if not addresses:
        raise FetchError(f"{host} does not resolve", "check the host name")
    for address in addresses:
        reason = blocked_reason(address)
        if reason:
            shown = host if host == address else f"{host} ({address})"
            raise FetchError(f"{shown} is {reason}", ALLOW_FIX)
    return Hop(url=url, host=host, port=port, address=addresses[0])


def pinned_request(client: httpx.Client, method: str, hop: Hop, **kwargs: object) -> httpx.Request:
    """A request to the checked address that keeps the URL's Host header and TLS server name."""
    if hop.address is None:
        return client.build_request(method, hop.url, **kwargs)  # type: ignore[arg-type]
    url = httpx.URL(hop.url)
    headers = {**dict(kwargs.pop("headers", None) or {}), "Host": url.netloc.decode("ascii")}  # type: ignore[call-overload]
    return client.build_request(
        method,
        url.copy_with(host=hop.address),
        headers=headers,
        extensions={"sni_hostname": hop.host},
        **kwargs,  # type: ignore[arg-type]
    )


def _size(n: int) -> str:
    return f"{n / 2**30:.0f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def fetch_to(
    url: str,
    sink: BinaryIO,
    *,
    kind: str = "file",
    allowed_hosts: set[str] | Iterable[str] | None = None,
    resolver: Resolver = resolve_host,
    limits: FetchLimits | None = None,
) -> int:
    """Stream ``url`` into ``sink`` within the kind's limits; the number of bytes written."""
    limits = limits or LIMITS[kind]
    allowed = _allowed(allowed_hosts)
    started = time.monotonic()
    deadline = started + limits.total_s
    timeout = httpx.Timeout(limits.read_s, connect=limits.connect_s)
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            hop = check_url(url, allowed, resolver)
            request = pinned_request(client, "GET", hop, headers={"User-Agent": "better-loom/1", "Accept-Encoding": "identity"})
            try:
                response = client.send(request, stream=True)
            except httpx.TimeoutException:
                raise FetchError(f"{hop.host} did not answer in time", "check the URL, or host the file elsewhere") from None
            except httpx.HTTPError as exc:
                raise FetchError(f"{hop.host} could not be reached ({type(exc).__name__})", "check the URL") from None
            try:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    if not location:
                        raise FetchError(f"{hop.host} answered a redirect without a location", "give the file's final URL")
                    url = urljoin(url, location)
                    continue
                if response.status_code != 200:
                    raise FetchError(f"{hop.host} answered HTTP {response.status_code}", "check the URL")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limits.max_bytes:
                    raise TooLarge(f"the {kind} is over {_size(limits.max_bytes)}", f"use a {kind} under {_size(limits.max_bytes)}")
                written = 0
                try:
                    for chunk in response.iter_bytes():  # as it arrives, decoded: the cap counts what is kept
                        written += len(chunk)
                        if written > limits.max_bytes:
                            raise TooLarge(f"the {kind} is over {_size(limits.max_bytes)}", f"use a {kind} under {_size(limits.max_bytes)}")
                        now = time.monotonic()
                        if now > deadline:
                            raise FetchError(
                                f"{hop.host} took over {limits.total_s:g} s to send the {kind}", "host it somewhere faster"
                            )
                        if now - started > limits.grace_s and written / (now - started) < limits.min_rate:
                            raise FetchError(f"{hop.host} is sending the {kind} too slowly", "host it somewhere faster")
                        sink.write(chunk)
                except httpx.TimeoutException:
                    raise FetchError(f"{hop.host} stopped sending the {kind}", "check the URL, or host it elsewhere") from None
                except httpx.HTTPError as exc:
                    raise FetchError(f"{hop.host} broke off sending the {kind} ({type(exc).__name__})", "try again") from None
                return written
            finally:
                response.close()
    raise FetchError(f"more than {MAX_REDIRECTS} redirects", "give the file's final URL")


def fetch_bytes(url: str, *, kind: str = "file", **options: object) -> bytes:
    buffer = io.BytesIO()
    fetch_to(url, buffer, kind=kind, **options)  # type: ignore[arg-type]
    return buffer.getvalue()


def _allowed(allowed_hosts: set[str] | Iterable[str] | None) -> set[str]:
    if allowed_hosts is None:
        from loom.settings import get_settings

        return parse_allowed_hosts(get_settings().input_allowed_hosts)
    return allowed_hosts if isinstance(allowed_hosts, set) else parse_allowed_hosts(allowed_hosts)
