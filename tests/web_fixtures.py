"""The web server (``loom serve``'s app) on a free port in this process, with LOOM_PUBLIC_URL
pointing at it, so the links the engine writes open against it; and headless Chromium."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gcs_fixtures import free_port

API_KEY = "web-test-key"
SCREENSHOTS = Path(__file__).resolve().parent / "output" / "screenshots"


class WebServer:
    def __init__(self, url: str, home: Path) -> None:
        self.url, self.home = url, home


@contextlib.contextmanager
def serving(home: Path) -> Iterator[WebServer]:
    """``loom serve``'s app on a free port for a LOOM_HOME; the engine's links point at it meanwhile."""
    import uvicorn

    from app.api import create_app
    from loom.settings import reload_settings

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LOOM_HOME", str(home))
        env.setenv("LOOM_PUBLIC_URL", url)
        env.setenv("LOOM_API_KEYS", API_KEY)
        env.delenv("ELEVENLABS_API_KEY", raising=False)
        reload_settings()
        server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        try:
            yield WebServer(url, home)
        finally:
            server.should_exit = True
            thread.join(10)
    reload_settings()


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Debian's Chromium driven by the pip playwright's driver (its own browser download is not used).

    Per module, not per session: while Playwright's sync API is open it runs an event loop on the
    main thread, and a Prefect flow called then (a later module's) returns a coroutine."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    assert executable, "chromium is not installed: run setup.sh as root (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        yield browser
        browser.close()


def screenshot(page: object, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)  # type: ignore[attr-defined]
    return path
