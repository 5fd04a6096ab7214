"""The recipient flow against a real Prefect server: same video as the CLI's composition,
artifacts and lineage, and caches that make a re-run pay for nothing twice."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from loom.errors import InputError
from testkit.media import decode_audio, decode_rgb
from tests.prefect_fixtures import (  # noqa: F401  (fixtures)
    api,
    artifacts_of,
    fake_elevenlabs,
    prefect_stack,
    task_runs_of,
    use_stack,
    write_template,
)

ROW = {"client_name": "Ada", "company_name": "Acme Robotics"}

pytestmark = pytest.mark.e2e  # a real Prefect server, pools and workers


def _run(template: Path, data: dict[str, str], output: str | None = None) -> tuple[object, str]:
    from flows.recipient import personalize_recipient

    state = personalize_recipient(str(template), data, output, return_state=True)
    assert state.is_completed(), state
    return state.result(), str(state.state_details.flow_run_id)


def _asset_events(client, key_fragment: str, timeout: float = 15) -> list[dict]:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        resp = client.post(
            "/events/filter",
            json={"filter": {"event": {"name": ["prefect.asset.materialization.succeeded"]}}, "limit": 50},
        )
        resp.raise_for_status()
        events = [e for e in resp.json()["events"] if key_fragment in e["resource"]["prefect.resource.id"]]
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def test_flow_makes_the_same_video_as_the_cli_with_artifacts_and_lineage(loom_home: Path, use_stack, tmp_path: Path) -> None:  # noqa: ANN001
    from loom.pipeline import personalize

    template = write_template(tmp_path / "tpl")
    result, run_id = _run(template, ROW, str(tmp_path / "flow.mp4"))
    cli = personalize(str(template), ROW, str(tmp_path / "cli.mp4"))

    # one composition of the steps: the flow and the CLI give the same recipient and the same video
    assert result.recipient_key == cli.recipient_key
    assert [v.speech_cache_key for v in result.voice] == [v.speech_cache_key for v in cli.voice]
    flow_frames, cli_frames = decode_rgb(result.output_uri), decode_rgb(cli.output_uri)
    assert len(flow_frames) == len(cli_frames) == 75
    for a, b in zip(flow_frames, cli_frames):
        assert np.array_equal(a, b)
    assert np.allclose(decode_audio(result.output_uri), decode_audio(cli.output_uri), atol=1e-3)
    assert Path(result.preview_uri).is_file() and Path(result.record_uri).is_file()

    with api(use_stack) as client:
        artifacts = {a["key"]: a for a in artifacts_of(client, [run_id])}
        link = artifacts[f"video-{result.recipient_key}"]
        # Prefect stores a link artifact as markdown "[text](url)": the URI as text, a link that opens
        from loom import links

        url = link["data"].split("](", 1)[1].rstrip(")")
        assert links.open_media_token(url.split("/")[-2]) == str(Path(result.output_uri).resolve())
        summary = artifacts[f"recipient-{result.recipient_key}"]["data"]
        assert result.template_version in summary and result.voice[0].speech_cache_key in summary
        assert "![preview](http" in summary and "![poster](http" in summary and "software version" in summary
        assert "file://" not in summary
        lineage = artifacts[f"lineage-{result.recipient_key}"]
        assert lineage["type"] == "table"
        assert "base.mp4" in lineage["data"] and "prepared.json" in lineage["data"] and "flow.mp4" in lineage["data"]
        # lineage as asset events too: the video's materialization names the prepared template upstream
        events = _asset_events(client, "flow.mp4")
        assert events, "no asset materialization event for the video"
        related = [r["prefect.resource.id"] for r in events[0]["related"]]
        assert any("prepared.json" in r for r in related)


def test_rerun_hits_the_prepare_and_speech_caches_and_remakes_deleted_files(loom_home: Path, use_stack, tmp_path: Path) -> None:  # noqa: ANN001
    template = write_template(tmp_path / "tpl")
    first, _ = _run(template, ROW)
    _, second_id = _run(template, ROW)
    with api(use_stack) as client:
        states = {t["name"].rsplit("-", 1)[0]: t["state"]["name"] for t in task_runs_of(client, second_id)}
    assert states["prepare-template"] == "Cached"
    assert states["voice-line"] == "Cached"

    # a cached result whose file is gone is made again, not handed out
    Path(first.voice[0].uri).unlink()
    third, third_id = _run(template, ROW)
    assert Path(third.voice[0].uri).is_file()
    with api(use_stack) as client:
        names = [t["state"]["name"] for t in task_runs_of(client, third_id) if t["name"].startswith("voice-line")]
    assert "Completed" in names


def test_bad_row_fails_before_any_work(loom_home: Path, use_stack, tmp_path: Path) -> None:  # noqa: ANN001
    from flows.recipient import personalize_recipient

    template = write_template(tmp_path / "tpl")
    with pytest.raises(InputError, match="company_name"):
        personalize_recipient(str(template), {"client_name": "Ada"})
    assert not (loom_home / "prepared").exists()
