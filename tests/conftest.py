"""Shared test set-up: every test session gets its own LOOM_HOME and Prefect home."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="loom-tests-"))
os.environ.setdefault("LOOM_HOME", str(_SESSION_TMP / "loom-home"))
os.environ.setdefault("PREFECT_HOME", str(_SESSION_TMP / "prefect-home"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Events still queued when the test process exits go to a fresh ephemeral server that knows none of
# their runs; its "FOREIGN KEY constraint failed" log would land after pytest's summary. Tests judge
# servers by what they return, never by their logs.
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
# Tests never talk to the real ElevenLabs: only the fake servers they start set these.
for _name in ("ELEVENLABS_API_KEY", "ELEVENLABS_BASE_URL", "LOOM_WAV2LIP_CHECKPOINT", "PREFECT_API_URL"):
    os.environ.pop(_name, None)


@pytest.fixture(autouse=True)
def operator_folders(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The tests' folders are the operator's: sheets and logos there may be read (loom.input_policy).
    Tests of the input guard itself take this away (``monkeypatch.delenv("LOOM_ALLOWED_ROOTS")``)."""
    from loom.settings import forget_configured

    monkeypatch.setenv("LOOM_ALLOWED_ROOTS", str(tmp_path_factory.getbasetemp()))
    forget_configured()  # what an in-process CLI call configured (its roots) ends with its test
    yield
    forget_configured()
    # A flow run in this process (a campaign's rows) makes provider calls take their slots from the
    # Prefect server it talked to; the next test's server may have no such limit.
    from loom.provider_slots import hold_slots_with

    hold_slots_with(None)


@pytest.fixture
def loom_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh LOOM_HOME for one test, with no ElevenLabs key (the offline voice speaks)."""
    from loom.settings import reload_settings

    home = tmp_path / "home"
    monkeypatch.setenv("LOOM_HOME", str(home))
    monkeypatch.delenv("ELEVENLABS_API_KEY", raising=False)
    reload_settings()
    yield home
    monkeypatch.undo()
    reload_settings()


# Fixtures that start servers, workers or a browser: a test using one is end-to-end whatever its
# module says, so `pytest -m "not e2e"` (the quick loop) never starts them.
E2E_FIXTURES = {"prefect_stack", "use_stack", "chromium"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


def pytest_unconfigure(config: pytest.Config) -> None:
    # Prefect's temporary servers log "Stopping temporary server" from an atexit hook, after pytest
    # has closed the streams its handlers hold; that would print a logging traceback after the summary.
    import logging

    logging.raiseExceptions = False
