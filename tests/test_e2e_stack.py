"""End to end through the ``loom up`` stack: a Prefect server, process pools ``cpu`` and ``gpu``,
the deployments of prefect.yaml and one worker per pool; runs are created through the REST API."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from loom.lipsync.checkpoint import write_random_checkpoint
from tests.prefect_fixtures import (  # noqa: F401  (fixtures)
    api,
    artifacts_of,
    child_flow_runs,
    create_run,
    deployment_id,
    fake_elevenlabs,
    prefect_stack,
    read_manifest,
    use_stack,
    wait_for_run,
    write_sheet,
    write_template,
)

pytestmark = pytest.mark.e2e


def _store_template(stack, template_path: Path, template_id: str) -> str:  # noqa: ANN001
    """Save the template under the stack's LOOM_HOME so runs can name it by id."""
    data = json.loads(template_path.read_text())
    data["id"] = template_id
    data["base_video_path"] = str(template_path.parent / data["base_video_path"])
    target = Path(stack.env["LOOM_HOME"]) / "templates" / f"{template_id}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data))
    return template_id


def test_recipient_run_through_rest_makes_a_video_and_sends_lipsync_to_the_gpu_pool(prefect_stack, tmp_path: Path) -> None:  # noqa: ANN001
    template = write_template(tmp_path / "tpl")
    output = tmp_path / "out" / "ada.mp4"
    # The GPU pool's deployment has a checkpoint (as a GPU image would); the CPU side has none, so
    # the patches can only come from the child run on the gpu pool.
    checkpoint = write_random_checkpoint(tmp_path / "wav2lip_random.pth", seed=3)
    with api(prefect_stack) as client:
        gpu_dep = deployment_id(client, "wav2lip", "wav2lip")
        before = client.get(f"/deployments/{gpu_dep}").json()["job_variables"]
        env = {"LOOM_WAV2LIP_CHECKPOINT": str(checkpoint), "LOOM_WAV2LIP_DEVICE": "cpu"}
        assert client.patch(f"/deployments/{gpu_dep}", json={"job_variables": {**before, "env": env}}).status_code == 204
        try:
            _recipient_run_on_the_gpu_pool(client, template, output, checkpoint)
        finally:
            client.patch(f"/deployments/{gpu_dep}", json={"job_variables": before})


def _recipient_run_on_the_gpu_pool(client, template: Path, output: Path, checkpoint: Path) -> None:  # noqa: ANN001
    dep = deployment_id(client, "personalize-recipient", "personalize-recipient")
    created = create_run(
        client,
        dep,
        {
            "parameters": {"template": str(template), "data": {"client_name": "Ada", "company_name": "Acme"}, "output": str(output)},
            # a GPU pool configured for this run: lip-sync becomes a run of the wav2lip deployment
            "job_variables": {"env": {"LOOM_GPU_POOL": "gpu"}},
        },
    )
    run = wait_for_run(client, created["id"])
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert output.is_file() and output.stat().st_size > 1000

    links = [a for a in artifacts_of(client, [run["id"]]) if (a["key"] or "").startswith("video-")]
    assert len(links) == 1 and str(output.resolve()) in links[0]["data"] and "/media/" in links[0]["data"]

    children = child_flow_runs(client, run["id"])
    wav2lip = [c for c in children if c["deployment_id"] == deployment_id(client, "wav2lip", "wav2lip")]
    assert len(wav2lip) == 1
    assert wav2lip[0]["work_pool_name"] == "gpu" and wav2lip[0]["state"]["type"] == "COMPLETED"
    # the child ran the model with the pool's checkpoint (it did not skip): its patch set is in
    # the recipient's record, with the checkpoint's digest and every frame of the window
    record = json.loads(output.with_suffix(".json").read_text())
    (lips,) = [p for p in record["patches"] if p["kind"] == "lipsync"]
    assert lips["segment_id"] == "greeting" and lips["stop_frame"] - lips["first_frame"] == 50
    assert lips["qa"]["checkpoint"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:16]
    assert lips["qa"]["frames"] == 50 and lips["qa"]["device"] == "cpu"


def test_campaign_killed_midway_and_rerun_makes_each_video_once(prefect_stack, fake_elevenlabs, tmp_path: Path) -> None:  # noqa: ANN001
    template_id = _store_template(prefect_stack, write_template(tmp_path / "tpl"), "e2ecampaign")
    # Names no other test speaks, so row 1's line is not in the speech cache and its request
    # reaches the fake (which refuses it).
    rows = [
        {"client_name": "Katherine", "company_name": "Johnson Orbital"},
        {"client_name": "Margaret", "company_name": "Hamilton Software"},
        {"client_name": "Dennis"},  # row 3: no company
        {"client_name": "Frances", "company_name": "Allen Compilers"},
        {"client_name": "Radia", "company_name": "Perlman Networks"},
        {"client_name": "Barbara", "company_name": "Liskov Systems"},  # rows 6 and 7: enough work left
        {"client_name": "Shafi", "company_name": "Goldwasser Proofs"},  # that the kill lands mid-campaign
    ]
    sheet = write_sheet(tmp_path / "sheet.csv", rows, ["client_name", "company_name"])
    out = tmp_path / "out"
    params = {"template": template_id, "sheet": str(sheet), "output_dir": str(out), "concurrency": 1}
    # The first speech request fails for good: row 1 fails, the campaign goes on; the re-run makes it.
    # (Rows are spoken a few at a time, apart from rendering: the fault is aimed at row 1's line.)
    fake_elevenlabs.fail_next(
        401, {"detail": {"status": "quota_exceeded", "message": "This request exceeds your quota."}},
        path_contains="text-to-speech", text_contains="Katherine",
    )
    with api(prefect_stack) as client:
        dep = deployment_id(client, "campaign", "campaign")
        first = create_run(client, dep, {"parameters": params})
        deadline = time.monotonic() + 180
        while not list(out.glob("*.mp4")):  # row 2's video: row 1 has failed by now
            assert time.monotonic() < deadline, "the campaign made no video"
            time.sleep(0.2)
        prefect_stack.kill("worker-cpu")  # the worker and the campaign run it started die mid-campaign
        made_before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
        assert 1 <= len(made_before) < 6, "the kill came too late to test a resume"
        killed = {int(r["row"]): r for r in read_manifest(out / "manifest.csv")}
        assert killed[1]["status"] == "failed" and "quota" in killed[1]["error"].lower()
        assert client.get(f"/flow_runs/{first['id']}").json()["state"]["type"] == "RUNNING"

        prefect_stack.start_worker("cpu")
        second = create_run(client, dep, {"parameters": params})
        run = wait_for_run(client, second["id"])
        assert run["state"]["type"] == "COMPLETED", run["state"]

    videos = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    assert len(videos) == 6  # one per valid row, no duplicates
    for name, mtime in made_before.items():
        assert videos[name] == mtime  # made once, not again
    by_row = {int(r["row"]): r for r in read_manifest(out / "manifest.csv")}
    assert by_row[3]["status"] == "invalid" and "company_name" in by_row[3]["error"]
    assert sum(r["status"] == "skipped" for r in by_row.values()) == len(made_before)
    assert by_row[1]["status"] == "done"  # failed (quota) in the killed run, made by the re-run
    assert all(r["status"] in ("done", "skipped") for n, r in by_row.items() if n != 3)


def test_blocks_register_with_the_server_and_the_storage_block_sets_the_home(prefect_stack, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from blocks import LoomStorage, apply_configured_blocks
    from loom.settings import forget_configured, get_settings, reload_settings

    done = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "blocks"],
        env=prefect_stack.env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with api(prefect_stack) as client:
        for slug in ("loom-storage", "elevenlabs-credentials", "wav2lip-model", "sync-labs-credentials"):
            assert client.get(f"/block_types/slug/{slug}").status_code == 200, slug

    home = tmp_path / "block-home"
    with temporary_settings({PREFECT_API_URL: prefect_stack.api_url}):
        LoomStorage(home=str(home)).save("e2e-storage", overwrite=True)
        monkeypatch.setenv("LOOM_STORAGE_BLOCK", "e2e-storage")
        try:
            assert apply_configured_blocks() == ["storage"]
            assert get_settings().home == str(home)
            assert os.environ["LOOM_HOME"] != str(home)  # handed to the engine, not written to the environment
        finally:
            forget_configured()
            monkeypatch.undo()
            reload_settings()


def test_campaign_scaled_out_runs_batches_as_child_runs_on_the_cpu_pool(prefect_stack, tmp_path: Path) -> None:  # noqa: ANN001
    template = write_template(tmp_path / "tpl")
    rows = [{"client_name": n, "company_name": f"{n} Inc"} for n in ("Hedy", "Ida", "Jean")]
    sheet = write_sheet(tmp_path / "sheet.csv", rows)
    out = tmp_path / "out"
    params = {"template": str(template), "sheet": str(sheet), "output_dir": str(out), "scale_out": True, "batch_size": 2}
    with api(prefect_stack) as client:
        dep = deployment_id(client, "campaign", "campaign")
        created = create_run(client, dep, {"parameters": params})
        run = wait_for_run(client, created["id"], timeout=240)
        assert run["state"]["type"] == "COMPLETED", run["state"]
        children = [c for c in child_flow_runs(client, run["id"]) if c["deployment_id"] == dep]
    assert sorted(c["parameters"]["rows"] for c in children) == [[1, 2], [3]]
    assert all(c["work_pool_name"] == "cpu" and c["state"]["type"] == "COMPLETED" for c in children)
    assert len(list(out.glob("*.mp4"))) == 3
    manifest = read_manifest(out / "manifest.csv")
    assert [r["status"] for r in manifest] == ["done", "done", "done"]
    assert all("/v/" in r["share_url"] and "/media/" in r["video_url"] for r in manifest)  # carried up from the batches
    assert (out / "manifest-rows-1-2.csv").is_file() and (out / "manifest-rows-3-3.csv").is_file()


def test_jobs_api_campaign_rows_cannot_make_the_server_read_its_files_or_its_network(
    use_stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    """Through the jobs API on the local stack: rows naming a private server file (present or not),
    an internal 127.0.0.1 service and an unresolvable host fail alone, each with a line that says
    why and not what is there; the good row is made; the internal service receives no request."""
    import shutil
    import tempfile
    from http.server import BaseHTTPRequestHandler

    from fastapi.testclient import TestClient
    from PIL import Image
    from pydantic import SecretStr

    from app.api import create_app
    from loom.campaign import read_manifest_statuses
    from loom.settings import LoomSettings, reload_settings
    from testkit.http import serving

    prefect_stack = use_stack
    home = Path(prefect_stack.env["LOOM_HOME"])
    monkeypatch.setenv("LOOM_HOME", str(home))
    reload_settings()
    data = json.loads(write_template(tmp_path / "tpl").read_text())
    data.update(id="guarded", base_video_path=str(tmp_path / "tpl" / "base.mp4"), voice_segments=[])
    data["visual_segments"].append(
        {"id": "badge", "segment_type": "image", "start_time": 1.0, "end_time": 2.6, "x": 0.6, "y": 0.6,
         "width": 0.3, "height": 0.3, "placeholder_key": "logo", "track": False}
    )
    (home / "templates").mkdir(parents=True, exist_ok=True)
    (home / "templates" / "guarded.json").write_text(json.dumps(data))
    (home / "assets").mkdir(exist_ok=True)
    Image.new("RGB", (40, 40), (20, 200, 90)).save(home / "assets" / "guard-logo.png")
    # A private folder of the server: outside $LOOM_HOME, the video's folder and the stack's allowed roots.
    private = Path(tempfile.mkdtemp(prefix="loom-private-"))
    Image.new("RGB", (40, 40), (200, 20, 20)).save(private / "secret.png")
    hits: list[str] = []

    class Internal(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    try:
        with serving(Internal) as inside:
            (home / "sheets").mkdir(exist_ok=True)
            (home / "sheets" / "guard.csv").write_text(
                "company_name,logo\n"
                "Globex,../assets/guard-logo.png\n"
                f"Private,{private / 'secret.png'}\n"
                f"Missing,{private / 'missing.png'}\n"
                f"Internal,http://127.0.0.1:{inside.server_address[1]}/logo.png\n"
                "Nowhere,https://no-such-host.invalid/logo.png\n"
            )
            client = TestClient(create_app(LoomSettings(api_keys=SecretStr("guard-key-0123456789")), rate_limit_per_minute=0))
            r = client.post("/campaigns", json={"template_id": "guarded", "sheet": "sheets/guard.csv"}, headers={"X-API-Key": "guard-key-0123456789"})
            assert r.status_code == 202, r.text
            with api(prefect_stack) as rest:
                run = wait_for_run(rest, r.json()["id"], timeout=240)
            assert run["state"]["type"] == "COMPLETED", run["state"]
            job = client.get(f"/jobs/{r.json()['id']}", headers={"X-API-Key": "guard-key-0123456789"}).json()
    finally:
        shutil.rmtree(private, ignore_errors=True)
    statuses = read_manifest_statuses(job["output_uri"])
    assert statuses[1][0] == "done", statuses
    refused = "logo (row {n}): is not in a folder this server reads for clients"
    assert statuses[2][0] == statuses[3][0] == "invalid"
    assert statuses[2][1].startswith(refused.format(n=2)) and statuses[3][1] == statuses[2][1].replace("(row 2)", "(row 3)")
    assert statuses[4][0] == "invalid" and "127.0.0.1 is a loopback address" in statuses[4][1]
    assert statuses[5][0] == "failed" and "no-such-host.invalid does not resolve" in statuses[5][1]
    assert hits == []  # the internal service received no request
