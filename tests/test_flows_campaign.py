"""The campaign flow against a real Prefect server: bad rows and failed recipients never stop the
others, the manifest says what and why, and an unchanged re-run makes nothing and asks for no speech."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.prefect_fixtures import (  # noqa: F401  (fixtures)
    API_KEY,
    api,
    artifacts_of,
    fake_elevenlabs,
    prefect_stack,
    read_manifest,
    speech_requests,
    use_stack,
    write_sheet,
    write_template,
)

ROWS = [
    {"client_name": "Ada", "company_name": "Acme"},
    {"client_name": "Grace", "company_name": "Hopper Labs"},
    {"client_name": "Alan", "company_name": ""},  # row 3: missing its company
    {"client_name": "Edsger", "company_name": "Dijkstra & Co"},
    {"client_name": "Barbara", "company_name": "Liskov Systems"},
]

pytestmark = pytest.mark.e2e  # a real Prefect server, pools and workers


@pytest.fixture
def cloned_voice(monkeypatch: pytest.MonkeyPatch, fake_elevenlabs):  # noqa: ANN001, ANN201
    """Speech from the fake ElevenLabs (so requests can be counted and made to fail)."""
    monkeypatch.setenv("ELEVENLABS_API_KEY", API_KEY)
    monkeypatch.setenv("ELEVENLABS_BASE_URL", fake_elevenlabs.base_url)
    monkeypatch.setenv("ELEVENLABS_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("ELEVENLABS_MAX_BACKOFF_S", "1")
    return fake_elevenlabs


def _campaign(template: Path, sheet: Path, out: Path, concurrency: int = 2, **options: object):  # noqa: ANN202
    from flows.campaign import campaign

    state = campaign(str(template), str(sheet), str(out), concurrency=concurrency, return_state=True, **options)
    assert state.is_completed(), state
    return state.result(), str(state.state_details.flow_run_id)


def test_bad_row_is_reported_and_the_others_are_made_then_a_rerun_makes_nothing(
    loom_home: Path, use_stack, cloned_voice, tmp_path: Path  # noqa: ANN001
) -> None:
    template = write_template(tmp_path / "tpl")
    sheet = write_sheet(tmp_path / "sheet.csv", ROWS)
    out = tmp_path / "out"
    result, run_id = _campaign(template, sheet, out)

    videos = sorted(out.glob("*.mp4"))
    assert len(videos) == 4
    manifest = read_manifest(out / "manifest.csv")
    assert result.manifest_uri == str(out / "manifest.csv")
    by_row = {int(r["row"]): r for r in manifest}
    assert set(by_row) == {1, 2, 3, 4, 5}
    assert by_row[3]["status"] == "invalid" and "company_name" in by_row[3]["error"] and "row 3" in by_row[3]["error"]
    for n in (1, 2, 4, 5):
        assert by_row[n]["status"] == "done" and Path(by_row[n]["output_uri"]).is_file() and by_row[n]["error"] == ""
        assert float(by_row[n]["seconds"]) > 0 and by_row[n]["row_key"]
    assert {by_row[n]["recipient"] for n in (1, 2, 4, 5)} == {"Ada", "Grace", "Edsger", "Barbara"}
    assert result.counts == {"done": 4, "invalid": 1}

    with api(use_stack) as client:
        artifacts = {a["key"]: a for a in artifacts_of(client, [run_id]) if a["key"]}
    assert artifacts["campaign-progress"]["data"] == 100.0
    assert "company_name" in str(artifacts["campaign-manifest"]["data"])
    # the campaign page, linked from the run: a signed link to this campaign's registered manifest
    from urllib.parse import parse_qs, urlsplit

    from loom import links
    from loom.campaign import registered_campaign

    page = urlsplit(artifacts["campaign-page"]["data"].split("](", 1)[1].rstrip(")"))
    query = {k: v[0] for k, v in parse_qs(page.query).items()}
    campaign_id = page.path.rsplit("/", 1)[1]
    links.check_page("campaign", campaign_id, int(query["exp"]), query["sig"])
    assert registered_campaign(campaign_id)["manifest_uri"] == str(out / "manifest.csv")
    assert all(by_row[n]["share_url"].startswith(links.public_base() + "/v/") for n in (1, 2, 4, 5))

    # unchanged re-run: every made row is skipped, nothing is re-made, no speech is requested
    requests_before = speech_requests(cloned_voice)
    mtimes = {v: v.stat().st_mtime_ns for v in videos}
    rerun, _ = _campaign(template, sheet, out)
    assert rerun.counts == {"skipped": 4, "invalid": 1}
    assert speech_requests(cloned_voice) == requests_before
    assert {v: v.stat().st_mtime_ns for v in sorted(out.glob("*.mp4"))} == mtimes


def test_a_failing_voice_request_fails_only_its_recipient(loom_home: Path, use_stack, cloned_voice, tmp_path: Path) -> None:  # noqa: ANN001
    template = write_template(tmp_path / "tpl")
    sheet = write_sheet(tmp_path / "sheet.csv", [ROWS[0], ROWS[1], ROWS[3]])
    out = tmp_path / "out"
    # Row 1's speech request is refused for good (quota).
    cloned_voice.fail_next(
        401, {"detail": {"status": "quota_exceeded", "message": "This request exceeds your quota."}},
        path_contains="text-to-speech", text_contains="Ada",
    )
    result, _ = _campaign(template, sheet, out, concurrency=1)
    by_row = {int(r["row"]): r for r in read_manifest(out / "manifest.csv")}
    assert by_row[1]["status"] == "failed" and "quota" in by_row[1]["error"].lower()
    assert by_row[2]["status"] == by_row[3]["status"] == "done"
    assert len(list(out.glob("*.mp4"))) == 2
    assert result.counts == {"done": 2, "failed": 1}

    # a re-run retries only the failed row
    again, _ = _campaign(template, sheet, out, concurrency=1)
    assert again.counts == {"done": 1, "skipped": 2}


def _wait_for(check, timeout: float = 30.0):  # noqa: ANN001, ANN202
    """Task runs and artifacts reach the server as events, a moment after the run returns."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def test_rows_are_tasks_of_the_campaign_run_or_flow_runs_of_their_own(loom_home: Path, use_stack, tmp_path: Path) -> None:  # noqa: ANN001
    from tests.prefect_fixtures import child_flow_runs, task_runs_of

    template = write_template(tmp_path / "tpl")
    sheet = write_sheet(tmp_path / "sheet.csv", [ROWS[0], ROWS[1]])

    result, run_id = _campaign(template, sheet, tmp_path / "out")
    assert result.counts == {"done": 2}
    with api(use_stack) as client:
        names = _wait_for(lambda: (lambda n: n if {"row-1", "row-2", "speak-row-1", "speak-row-2"} <= n else None)(
            {t["name"] for t in task_runs_of(client, run_id)}))
        assert names, "the rows' task runs never reached the server"
        # the network step keeps its task: each row's speech is a task of its own (the speech stage)
        assert not any(n.startswith("voice-line") for n in names)  # and is not asked for again by the render
        assert child_flow_runs(client, run_id) == []  # no flow run per row
        # each recipient's link artifact (Prefect stores links as markdown "[text](url)") in the campaign run
        links = _wait_for(lambda: [a for a in artifacts_of(client, [run_id]) if (a["key"] or "").startswith("video-")])
        assert len(links) == 2 and all(".mp4)" in a["data"] for a in links)

    result, run_id = _campaign(template, sheet, tmp_path / "out-runs", flow_run_per_row=True)
    assert result.counts == {"done": 2}
    with api(use_stack) as client:
        children = _wait_for(lambda: (lambda c: c if len(c) == 2 else None)(child_flow_runs(client, run_id)))
        assert children and all(c["state"]["type"] == "COMPLETED" for c in children)
    assert len(list((tmp_path / "out-runs").glob("*.mp4"))) == 2

    # rows in worker processes: the same rows, each process with its own Prefect client
    result, _ = _campaign(template, sheet, tmp_path / "out-processes", workers="processes")
    assert result.counts == {"done": 2} and len(list((tmp_path / "out-processes").glob("*.mp4"))) == 2


def test_a_large_campaigns_table_lists_the_rows_not_made_and_links_the_full_manifest(
    loom_home: Path, use_stack, tmp_path: Path  # noqa: ANN001
) -> None:
    """1,000 rows: the table artifact is not 1,000 rows long but the counts, the rows not made and a
    link to the whole manifest; a small campaign's table still lists every row."""
    from loom.campaign import plan_campaign
    from loom.pipeline import template_version
    from loom.template import load_template
    from loom import links
    from tasks.artifacts import TABLE_ROWS_MAX, campaign_table

    template = load_template(str(write_template(tmp_path / "tpl")))
    rows = [{"client_name": f"Person {n}", "company_name": f"Company {n}" if n % 100 else ""} for n in range(1000)]
    plan = plan_campaign(template, template_version(template), str(write_sheet(tmp_path / "sheet.csv", rows)), str(tmp_path / "out"))
    for entry in plan.entries:
        if entry.status == "pending":
            plan.settle(entry.row.number, "done")
    plan.settle(5, "failed", "ElevenLabs quota exhausted")
    campaign_table(plan, template.id, "bigtable")
    campaign_table(plan.only_rows([1, 2, 3]), template.id, "smalltable")
    with api(use_stack) as client:
        found = client.post("/artifacts/latest/filter", json={"artifacts": {"key": {"any_": ["bigtable-manifest", "bigtable-manifest-file", "smalltable-manifest"]}}})
        by_key = {a["key"]: a for a in found.json()}
    big = by_key["bigtable-manifest"]
    listed = json.loads(big["data"]) if isinstance(big["data"], str) else big["data"]
    assert len(plan.entries) == 1000 > TABLE_ROWS_MAX
    assert sorted(int(r["row"]) for r in listed) == [1, 5, *range(101, 1000, 100)]  # 10 invalid, 1 failed
    assert "989 done" in big["description"] and "1 failed" in big["description"]
    assert "10 invalid" in big["description"] and "full manifest" in big["description"]
    link = by_key["bigtable-manifest-file"]["data"].rsplit("(", 1)[1].rstrip(")")  # [text](url): a link a browser opens
    assert link.startswith(links.public_base() + "/media/")
    assert Path(links.open_media_token(link.split("/")[-2])).resolve() == Path(plan.manifest_uri).resolve()
    small = by_key["smalltable-manifest"]
    assert len(json.loads(small["data"]) if isinstance(small["data"], str) else small["data"]) == 3
