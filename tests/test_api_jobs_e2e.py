"""A job through the real stack: the API creates a flow run on a real Prefect server, a runner
serving the real ``personalize-recipient`` flow makes the video, and the webhook arrives signed
at an allowed host (a receiver on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.api import create_app
from app.webhooks import verify
from loom.settings import LoomSettings
from testkit.media import make_clip
from testkit.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.e2e

KEY = "e2e-key-0123456789"
SECRET = "whsec-e2e-abcdef"


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server (SQLite) for this module, with its own result storage."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    mp = pytest.MonkeyPatch()
    mp.setenv("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(tmp_path_factory.mktemp("prefect-results")))
    try:
        with prefect_test_harness(server_startup_timeout=90):
            yield PREFECT_API_URL.value()
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def recipient_runner(prefect_api: str) -> Iterator[None]:
    """Serve the ``personalize-recipient`` deployment: runs start in subprocesses, as a worker does."""
    from prefect.runner import Runner

    from flows.recipient import personalize_recipient

    ready = threading.Event()
    holder: dict[str, object] = {}

    async def serve() -> None:
        runner = Runner(query_seconds=1, limit=2)
        await runner.aadd_flow(personalize_recipient, name="personalize-recipient")
        holder["runner"], holder["loop"] = runner, asyncio.get_running_loop()
        ready.set()
        await runner.start()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(60), "the runner did not start"
    yield
    asyncio.run_coroutine_threadsafe(holder["runner"].astop(), holder["loop"]).result(30)  # type: ignore[union-attr,arg-type]
    thread.join(30)


@pytest.fixture
def stored_template(loom_home: Path) -> Path:
    (loom_home / "templates").mkdir(parents=True)
    make_clip(loom_home / "templates" / "base.mp4", seconds=2.0, size=(320, 240))
    template = {
        "id": "e2e-demo",
        "name": "e2e",
        "base_video_path": "base.mp4",
        "voice_id": "",
        "voice_segments": [],
        "visual_segments": [
            {"id": "plate", "segment_type": "text", "start_time": 0.4, "end_time": 1.2, "x": 0.3, "y": 0.1,
             "width": 0.4, "height": 0.15, "placeholder_key": "company_name", "track": False},
        ],
    }
    (loom_home / "templates" / "e2e-demo.json").write_text(json.dumps(template))
    broken = dict(template, id="e2e-broken", base_video_path="broken.mp4")
    (loom_home / "templates" / "broken.mp4").write_bytes((loom_home / "templates" / "base.mp4").read_bytes()[:2000])
    (loom_home / "templates" / "e2e-broken.json").write_text(json.dumps(broken))
    return loom_home


def _run_parameters(job_id: str) -> dict:
    """The parameters of the job's flow run, as the Prefect API stored them."""
    import uuid

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(uuid.UUID(job_id)).parameters


def _wait_final(client: TestClient, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        r = client.get(f"/jobs/{job_id}", headers={"X-API-Key": KEY})
        assert r.status_code == 200, r.text
        body = r.json()
        seen.append(body["status"])
        assert body["status"] in {"scheduled", "running", "completed", "failed"}
        if body["status"] in ("completed", "failed"):
            return body
        time.sleep(1.0)
    raise AssertionError(f"job {job_id} did not finish: {seen[-5:]}")


def test_jobs_complete_or_fail_and_their_webhooks_arrive_signed(recipient_runner: None, stored_template: Path) -> None:
    """Two jobs at once: one makes its video, one fails on a corrupt recording; each webhook arrives signed."""
    home = stored_template
    with webhook_receiver(answers=[503]) as rx:  # the first delivery fails: the retry must bring it
        settings = LoomSettings(
            api_keys=SecretStr(KEY), webhook_secret=SecretStr(SECRET), webhook_allowed_hosts=f"127.0.0.1:{rx.port}"
        )
        client = TestClient(create_app(settings, rate_limit_per_minute=0, webhook_poll_s=0.5, webhook_backoff_s=0.2))

        r = client.post(
            "/jobs",
            json={
                "template_id": "e2e-demo",
                "company_name": "Globex",
                "webhook_url": rx.url,
                "output": "../../evil.mp4",  # not a placeholder: never reaches the run
            },
            headers={"X-API-Key": KEY},
        )
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert r.headers["Location"] == f"/jobs/{job_id}"
        assert _run_parameters(job_id) == {"template": "e2e-demo", "data": {"company_name": "Globex"}}
        broken = client.post(
            "/jobs",
            json={"template_id": "e2e-broken", "company_name": "Globex", "webhook_url": rx.url},
            headers={"X-API-Key": KEY},
        )
        assert broken.status_code == 202, broken.text
        broken_id = broken.json()["id"]

        job = _wait_final(client, job_id)
        assert job["status"] == "completed", job
        assert job["progress"] == 1.0 and job["error"] is None
        from loom import links

        assert job["output_url"].startswith(links.public_base() + "/media/")  # a signed link this server serves
        output = Path(links.open_media_token(job["output_url"].split("/")[-2]))
        assert output.is_absolute() and output.suffix == ".mp4" and job["output_uri"] == str(output)
        assert set(job["links"]) >= {"video", "poster", "gif", "email", "share"} and job["views"] == []
        assert output.is_file() and output.stat().st_size > 1000
        assert output.resolve().is_relative_to((home / "outputs").resolve())  # nothing outside the output folder

        failed = _wait_final(client, broken_id)
        assert failed["status"] == "failed" and failed["output_url"] is None
        assert failed["error"].startswith("base_video_path: ") and "broken.mp4" in failed["error"], failed["error"]

        assert rx.wait_for(2, timeout=60), f"webhooks did not arrive: {[r.answered for r in rx.received]}"
    assert len(rx.received) == 3  # one refused with 503, then retried
    payloads = {}
    for post in rx.delivered():
        assert verify(post.body, post.headers["X-Loom-Signature"], SECRET)
        assert KEY not in post.body.decode() and SECRET not in post.body.decode()
        payloads[json.loads(post.body)["id"]] = json.loads(post.body)
    assert payloads[job_id]["status"] == "completed" and payloads[job_id]["error"] is None
    # links are signed afresh on each read (their expiry moves): the same file behind both
    assert links.open_media_token(payloads[job_id]["output_url"].split("/")[-2]) == links.open_media_token(job["output_url"].split("/")[-2])
    assert payloads[broken_id]["status"] == "failed" and payloads[broken_id]["error"] == failed["error"]
    assert payloads[broken_id]["output_url"] is None
    # The job records say the webhooks were delivered.
    assert client.get(f"/jobs/{job_id}", headers={"X-API-Key": KEY}).json()["webhook"] == "delivered"

