"""Webhook signatures, the SSRF guard, and delivery with retries to a real HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from app import webhooks
from app.webhooks import blocked_reason, check_destination, deliver, sign, verify
from loom.errors import InputError
from testkit.webhook_receiver import webhook_receiver

SECRET = "whsec-test-abcdef"


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"1","status":"completed"}'
    header = sign(body, SECRET, timestamp=1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify(body, header, SECRET, now=1_700_000_010)
    assert not verify(body + b" ", header, SECRET, now=1_700_000_010)  # body changed
    assert not verify(body, header, "other-secret", now=1_700_000_010)
    assert not verify(body, header, SECRET, now=1_700_000_000 + 3600)  # replayed an hour later
    assert not verify(body, "v1=" + expected, SECRET, now=1_700_000_010)  # no timestamp


@pytest.mark.parametrize(
    "address,reason",
    [
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.0.0.7", "a private address"),
        ("172.16.3.4", "a private address"),
        ("192.168.1.1", "a private address"),
        ("169.254.10.10", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("fc00::5", "a private address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("64:ff9b::a9fe:a9fe", "a cloud metadata address"),  # NAT64 form of 169.254.169.254
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT
        ("0.0.0.0", "a private address"),  # ipaddress counts 0.0.0.0/8 as private
        ("224.0.0.1", "not a public address"),
    ],
)
def test_internal_addresses_are_blocked(address: str, reason: str) -> None:
    assert blocked_reason(address) == reason  # the exact reason: each class is told apart


def test_public_addresses_pass() -> None:
    assert blocked_reason("93.184.216.34") is None
    assert blocked_reason("2606:2800:220:1:248:1893:25c8:1946") is None


def test_a_name_that_resolves_inside_is_refused_unless_allowed() -> None:
    def resolver(host: str, port: int) -> list[str]:
        return {"hooks.example.com": ["93.184.216.34"], "rebind.example.com": ["93.184.216.34", "10.0.0.1"]}[host]

    assert check_destination("https://hooks.example.com/x", set(), resolver=resolver).address == "93.184.216.34"
    with pytest.raises(InputError) as err:
        check_destination("https://rebind.example.com/x", set(), resolver=resolver)
    assert err.value.field == "webhook_url" and "10.0.0.1" in err.value.problem
    allowed = check_destination("https://rebind.example.com/x", {"rebind.example.com"}, resolver=resolver)
    assert allowed.address is None
    assert check_destination("http://127.0.0.1:9/x", {"127.0.0.1:9"}).address is None  # host:port form
    with pytest.raises(InputError):
        check_destination("http://127.0.0.1:10/x", {"127.0.0.1:9"})


def test_delivery_is_signed_and_retried_until_it_arrives() -> None:
    with webhook_receiver(answers=[503, 500, 502, 429, 503]) as rx:
        delays: list[float] = []
        result = deliver(
            rx.url, {"id": "job-1", "status": "completed", "output_url": "file:///x.mp4", "error": None},
            secret=SECRET, allowed_hosts={"127.0.0.1"}, attempts=8, backoff_s=0.01, sleep=delays.append,
        )
    assert result.delivered and result.attempts == 6 and result.status_code == 200
    assert len(rx.received) == 6 and len(delays) == 5
    # Exponential within jitter: wait k is backoff * 2**(k-1) times a factor in [0.5, 1.5), so the
    # fifth wait's band (0.08-0.24 s) no longer meets the first's (0.005-0.015 s).
    for k, delay in enumerate(delays, start=1):
        assert 0.5 * 0.01 * 2 ** (k - 1) <= delay < 1.5 * 0.01 * 2 ** (k - 1), (k, delays)
    last = rx.received[-1]
    assert last.path == "/hooks/loom?token=abc"
    assert verify(last.body, last.headers["X-Loom-Signature"], SECRET)
    assert json.loads(last.body) == {"id": "job-1", "status": "completed", "output_url": "file:///x.mp4", "error": None}


def test_a_4xx_answer_is_not_retried() -> None:
    with webhook_receiver(answers=[410]) as rx:
        result = deliver(rx.url, {"id": "j"}, secret=SECRET, allowed_hosts={"127.0.0.1"}, attempts=4, sleep=lambda s: None)
    assert not result.delivered and result.attempts == 1 and result.status_code == 410 and len(rx.received) == 1


def test_redirects_are_not_followed() -> None:
    with webhook_receiver() as inner, webhook_receiver(answers=[302], redirect_to=inner.url) as rx:
        result = deliver(rx.url, {"id": "j"}, secret=SECRET, allowed_hosts={"127.0.0.1"}, attempts=2, sleep=lambda s: None)
    assert not result.delivered and inner.received == []


def test_delivery_rechecks_the_destination_and_never_connects_inside() -> None:
    with webhook_receiver() as rx:
        # Not allowed: 127.0.0.1 is loopback, so no request may reach the server.
        result = deliver(rx.url, {"id": "j"}, secret=SECRET, allowed_hosts=set(), attempts=3, sleep=lambda s: None)
        assert not result.delivered and result.attempts == 1 and "loopback" in (result.error or "")
        # A public name that re-resolves to loopback at delivery time (DNS rebinding) is refused too.
        url = rx.url.replace("127.0.0.1", "hooks.example.com")
        result = deliver(url, {"id": "j"}, secret=SECRET, allowed_hosts=set(), attempts=2, sleep=lambda s: None,
                         resolver=lambda host, port: ["127.0.0.1"])
        assert not result.delivered
    assert rx.received == []


def test_delivery_connects_to_the_checked_address_keeping_the_host_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """The address checked is the address used: the request goes to it with the URL's Host header."""
    monkeypatch.setattr(webhooks, "blocked_reason", lambda address: None)  # the test server counts as public here
    with webhook_receiver() as rx:
        url = rx.url.replace("127.0.0.1", "hooks.example.com")
        result = deliver(url, {"id": "j"}, secret=SECRET, allowed_hosts=set(), attempts=1,
                         resolver=lambda host, port: ["127.0.0.1"])
    assert result.delivered
    assert rx.received[0].headers["Host"] == f"hooks.example.com:{rx.port}"


def test_allowed_hosts_accept_hosts_ports_and_urls() -> None:
    assert webhooks.parse_allowed_hosts(" 127.0.0.1, Hooks.Example.com.,localhost:8080,http://10.0.0.5:9000/x,") == {
        "127.0.0.1", "hooks.example.com", "localhost:8080", "10.0.0.5:9000"
    }


def test_redacted_url_drops_tokens() -> None:
    assert webhooks.redact_url("https://u:p@h.example.com/a?token=SECRET") == "https://h.example.com/a"
