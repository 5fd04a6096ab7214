"""Fixtures for the Prefect flow and stack tests: a tiny template, sheets, a fake ElevenLabs and a
real Prefect server (the ``loom up`` stack) started once per test session.

Imported by ``tests/test_flows_*.py`` and ``tests/test_e2e_*.py`` (kept out of conftest.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from testkit.campaign_inputs import API_KEY, VOICE_ID, read_manifest, speech_requests, write_sheet, write_template  # noqa: F401
from testkit.fake_elevenlabs import FakeElevenLabs

# One fake ElevenLabs and one stack per test session, however many test modules import these
# fixtures (each importing module would otherwise get its own session-scoped copy).
_SHARED: dict[str, object] = {}


@pytest.fixture(scope="session")
def fake_elevenlabs(request: pytest.FixtureRequest) -> FakeElevenLabs:
    if "fake" not in _SHARED:
        fake = FakeElevenLabs(api_key=API_KEY, voices=(VOICE_ID,)).__enter__()
        request.config.add_cleanup(fake.__exit__)
        _SHARED["fake"] = fake
    return _SHARED["fake"]  # type: ignore[return-value]


@pytest.fixture(scope="session")
def prefect_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_elevenlabs: FakeElevenLabs) -> object:
    """One real Prefect server (SQLite in a temp PREFECT_HOME) with pools, deployments and workers.

    Only the stack's processes get its environment (their own LOOM_HOME, the fake ElevenLabs);
    this process talks to the server through ``use_stack``.
    """
    if "stack" in _SHARED:
        return _SHARED["stack"]
    from app.stack import LocalStack, free_port

    root = tmp_path_factory.mktemp("stack")
    env = {
        "PREFECT_HOME": str(root / "prefect-home"),
        "LOOM_HOME": str(root / "loom-home"),
        # the tests' folders are the operator's: sheets and logos there may be read
        "LOOM_ALLOWED_ROOTS": str(tmp_path_factory.getbasetemp()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",  # workers pick runs up within 2 s, not 10
        "ELEVENLABS_API_KEY": API_KEY,
        "ELEVENLABS_BASE_URL": fake_elevenlabs.base_url,
        "ELEVENLABS_MAX_ATTEMPTS": "2",
        "ELEVENLABS_MAX_BACKOFF_S": "1",
    }
    stack = LocalStack(port=free_port(), env=env, log_dir=root / "logs")
    stack.start()
    request.config.add_cleanup(stack.stop)
    stack.root = root  # type: ignore[attr-defined]
    _SHARED["stack"] = stack
    return stack


@pytest.fixture
def use_stack(prefect_stack: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Flows called in this test process (and processes it spawns) report to the stack's server."""
    monkeypatch.setenv("PREFECT_API_URL", prefect_stack.api_url)  # type: ignore[attr-defined]
    monkeypatch.setenv("PREFECT_LOGGING_TO_API_ENABLED", "false")
    from prefect.settings import PREFECT_API_URL, PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    # Logs stay local: the stack is stopped at the end of the session, before the log shipper.
    settings = {PREFECT_API_URL: prefect_stack.api_url, PREFECT_LOGGING_TO_API_ENABLED: False}  # type: ignore[attr-defined]
    with temporary_settings(settings):
        yield prefect_stack
        # Send this test's events while the server is still the stack's: left for exit, they would
        # go to a fresh ephemeral server that knows none of these runs.
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=15, at_exit=False)


def api(stack: object) -> httpx.Client:
    return httpx.Client(base_url=stack.api_url, timeout=30)  # type: ignore[attr-defined]


def deployment_id(client: httpx.Client, flow: str, name: str) -> str:
    resp = client.get(f"/deployments/name/{flow}/{name}")
    resp.raise_for_status()
    return str(resp.json()["id"])


def create_run(client: httpx.Client, deployment: str, body: dict, attempts: int = 6) -> dict:
    """``POST /deployments/{id}/create_flow_run`` as Prefect's own client makes it: a 503 (the local
    SQLite server answers "database is locked" while it writes a previous run's events) is retried."""
    for attempt in range(attempts):
        resp = client.post(f"/deployments/{deployment}/create_flow_run", json=body)
        if resp.status_code != 503 or attempt == attempts - 1:
            break
        time.sleep(1 + attempt)
    assert resp.status_code == 201, resp.text
    return resp.json()


def wait_for_run(client: httpx.Client, run_id: str, timeout: float = 180) -> dict:
    """Poll a flow run until it is final; return its JSON."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/flow_runs/{run_id}").json()
        state = run.get("state") or {}
        if state.get("type") in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        time.sleep(1)
    raise AssertionError(f"flow run {run_id} did not finish in {timeout} s: {run.get('state')}")


def artifacts_of(client: httpx.Client, flow_run_ids: list[str]) -> list[dict]:
    resp = client.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": flow_run_ids}}})
    resp.raise_for_status()
    return resp.json()


def task_runs_of(client: httpx.Client, flow_run_id: str) -> list[dict]:
    resp = client.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}})
    resp.raise_for_status()
    return resp.json()


def child_flow_runs(client: httpx.Client, parent_flow_run_id: str) -> list[dict]:
    """Flow runs started from a task of the given flow run (subflows and run_deployment children)."""
    task_ids = [t["id"] for t in task_runs_of(client, parent_flow_run_id)]
    if not task_ids:
        return []
    resp = client.post("/flow_runs/filter", json={"flow_runs": {"parent_task_run_id": {"any_": task_ids}}})
    resp.raise_for_status()
    return resp.json()
