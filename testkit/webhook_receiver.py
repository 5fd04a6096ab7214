"""A small HTTP server on 127.0.0.1 that records webhook POSTs (headers and raw body)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from testkit.http import serving


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int = 200


@dataclass
class Receiver:
    url: str
    port: int
    received: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # status codes to answer in turn, then 200

    def delivered(self) -> list[Received]:
        """The POSTs that were answered 200."""
        return [r for r in self.received if r.answered == 200]

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` POSTs were answered 200."""
        deadline = time.monotonic() + timeout
        while len(self.delivered()) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return len(self.delivered()) >= count


@contextmanager
def webhook_receiver(answers: list[int] | None = None, redirect_to: str | None = None) -> Iterator[Receiver]:
    state = Receiver(url="", port=0, answers=list(answers or []))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            code = state.answers.pop(0) if state.answers else 200
            state.received.append(Received(self.path, {k: v for k, v in self.headers.items()}, body, code))
            self.send_response(code)
            if redirect_to and code in (301, 302, 307, 308):
                self.send_header("Location", redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as server:
        state.port = server.server_address[1]
        state.url = f"http://127.0.0.1:{state.port}/hooks/loom?token=abc"
        yield state
