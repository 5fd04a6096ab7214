"""The voice provider's allowance, enforced by the orchestrator: two campaigns through the
``campaign`` deployment of the ``loom up`` stack share the ``elevenlabs`` global concurrency limit
(3 slots, the stack's LOOM_TTS_CONCURRENCY default), against a fake ElevenLabs that is slow and
refuses a fourth concurrent call."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from datetime import datetime
from pathlib import Path

import pytest

from tests.prefect_fixtures import (  # noqa: F401  (fixtures)
    api,
    create_run,
    deployment_id,
    fake_elevenlabs,
    prefect_stack,
    read_manifest,
    wait_for_run,
    write_sheet,
    write_template,
)

pytestmark = pytest.mark.e2e

SLOTS = 3
NAMES = ("Ada", "Grace", "Edsger", "Barbara", "Hedy", "Radia", "Frances", "Margaret", "Katherine", "Shafi", "Ida", "Jean")


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_two_campaigns_share_the_providers_three_slots_and_meet_no_refusal(prefect_stack, fake_elevenlabs, tmp_path: Path) -> None:  # noqa: ANN001
    with api(prefect_stack) as client:
        limit = client.get("/v2/concurrency_limits/elevenlabs").json()
        assert limit["limit"] == SLOTS  # created by the stack (`loom up`)
        assert client.get("/v2/concurrency_limits/gpu-lipsync").status_code == 200
        assert client.get("/v2/concurrency_limits/synclabs").status_code == 200

    template = write_template(tmp_path / "tpl")
    # Names with a suffix no other test speaks: every line is a request, none comes from a cache.
    sheets = []
    for half in (0, 1):
        rows = [{"client_name": f"{n} Slotwise", "company_name": f"{n} Ltd"} for n in NAMES[half * 6 : half * 6 + 6]]
        sheets.append(write_sheet(tmp_path / f"sheet{half}.csv", rows))
    fake_elevenlabs.limit_concurrency(SLOTS, latency_s=0.4)  # a plan allowing 3 calls at once
    try:
        with api(prefect_stack) as client:
            dep = deployment_id(client, "campaign", "campaign")
            created = [
                create_run(client, dep, {"parameters": {"template": str(template), "sheet": str(sheet),
                                                        "output_dir": str(tmp_path / f"out{i}"), "concurrency": 2}})
                for i, sheet in enumerate(sheets)
            ]  # fmt: skip
            runs = [wait_for_run(client, c["id"], timeout=300) for c in created]
        peak, refused = fake_elevenlabs.peak_concurrency, fake_elevenlabs.concurrency_refusals
    finally:
        fake_elevenlabs.limit_concurrency(None)
    assert all(r["state"]["type"] == "COMPLETED" for r in runs), [r["state"] for r in runs]
    for i in (0, 1):
        manifest = read_manifest(tmp_path / f"out{i}" / "manifest.csv")
        assert [r["status"] for r in manifest] == ["done"] * 6
        assert len(list((tmp_path / f"out{i}").glob("*.mp4"))) == 6
    # Both ran at the same time (each alone could fill the 3 slots), yet the provider never saw a
    # fourth call: the slots are one count across the two runs, not 3 per run.
    first, second = runs
    assert _when(first["start_time"]) < _when(second["end_time"]) and _when(second["start_time"]) < _when(first["end_time"])
    assert refused == 0
    assert peak == SLOTS
    with api(prefect_stack) as client:
        assert client.get("/v2/concurrency_limits/elevenlabs").json()["active_slots"] == 0  # every slot given back


def test_loom_up_postgres_runs_the_server_on_a_postgresql_of_its_own() -> None:
    """``LocalStack(postgres=True)`` (``loom up --postgres``): the deployments and the provider limits
    are rows of a PostgreSQL cluster in its own folder, which stops with the stack."""
    from app.local_postgres import DB_NAME, DB_USER, postgres_bin
    from app.stack import LocalStack, free_port

    root = Path(tempfile.mkdtemp(prefix="loom-pg-"))
    os.chmod(root, 0o755)  # as root, PostgreSQL runs as the postgres user, who must reach its folder
    env = {"PREFECT_HOME": str(root / "prefect-home"), "LOOM_HOME": str(root / "loom-home"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "LOOM_TTS_CONCURRENCY": "5"}  # fmt: skip
    stack = LocalStack(port=free_port(), env=env, log_dir=root / "logs", postgres=True, postgres_dir=root / "pg")
    try:
        with stack:
            assert stack.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
            query = [postgres_bin("psql"), "-h", "127.0.0.1", "-p", str(stack.postgres.port), "-U", DB_USER, "-d", DB_NAME, "-tAc"]
            names = subprocess.run([*query, "SELECT name FROM deployment ORDER BY name"], capture_output=True, text=True, check=True)
            assert names.stdout.split() == ["campaign", "personalize-recipient", "wav2lip"]
            limits = subprocess.run([*query, "SELECT name, \"limit\" FROM concurrency_limit_v2 ORDER BY name"],
                                    capture_output=True, text=True, check=True)  # fmt: skip
            assert limits.stdout.split() == ["elevenlabs|5", "gpu-lipsync|1", "synclabs|3"]
            assert not (root / "prefect-home" / "prefect.db").exists()  # not SQLite
        assert not (root / "pg" / "postmaster.pid").exists()  # stopped with the stack
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
