"""The pages a person opens, in headless Chromium (Debian's, driven by pip playwright): the
recipient artifact in the Prefect UI of the ``loom up`` stack, a share page, an email snippet and
a campaign page. One screenshot per page is kept under ``tests/output/screenshots``."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.prefect_fixtures import api, artifacts_of, create_run, deployment_id, fake_elevenlabs, prefect_stack, wait_for_run  # noqa: F401
from tests.gcs_fixtures import gcs_bucket  # noqa: F401
from tests.web_fixtures import chromium, screenshot, serving  # noqa: F401
from testkit.campaign_inputs import write_sheet, write_template

pytestmark = pytest.mark.e2e

IMAGES_LOADED = "() => [...document.images].map(i => i.complete ? i.naturalWidth : -1)"
# readyState >= 2 (HAVE_CURRENT_DATA) once the browser has fetched and decoded the first frame
VIDEO_READY = "() => { const v = document.querySelector('video'); return v && v.readyState >= 2 && v.videoWidth > 0; }"
GIF_FRAMES = """async (src) => {
  const data = await (await fetch(src)).arrayBuffer();
  const decoder = new ImageDecoder({data, type: 'image/gif'});
  await decoder.tracks.ready;
  return decoder.tracks.selectedTrack.frameCount;
}"""


def _wait_images(page, count: int) -> list[int]:  # noqa: ANN001
    page.wait_for_function(f"() => document.images.length >= {count} && [...document.images].every(i => i.complete)", timeout=30000)
    return page.evaluate(IMAGES_LOADED)


def test_recipient_run_through_rest_has_artifacts_whose_links_open_in_the_prefect_ui(prefect_stack, chromium, tmp_path: Path) -> None:  # noqa: ANN001, F811
    template = write_template(tmp_path / "tpl")
    output = tmp_path / "out" / "grace.mp4"
    with api(prefect_stack) as client:
        dep = deployment_id(client, "personalize-recipient", "personalize-recipient")
        params = {"template": str(template), "data": {"client_name": "Grace", "company_name": "Hopper"}, "output": str(output)}
        run = wait_for_run(client, create_run(client, dep, {"parameters": params})["id"])
        assert run["state"]["type"] == "COMPLETED", run["state"]
        (summary,) = [a for a in artifacts_of(client, [run["id"]]) if (a["key"] or "").startswith("recipient-")]
    markdown = summary["data"]
    assert "file://" not in markdown
    preview = re.search(r"!\[preview\]\(([^)]+)\)", markdown).group(1)
    video = re.search(r"\*\*Video:\*\* \[[^\]]*\]\(([^)]+)\)", markdown).group(1)
    assert preview.startswith(prefect_stack.web_url) and video.startswith(prefect_stack.web_url)
    resp = httpx.get(preview)
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png" and resp.content[:4] == b"\x89PNG"
    resp = httpx.get(video, headers={"Range": "bytes=0-1023"})
    assert resp.status_code == 206 and resp.headers["content-type"] == "video/mp4" and len(resp.content) == 1024

    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{prefect_stack.ui_url}/artifacts/artifact/{summary['id']}")
        page.wait_for_selector("img[alt=poster]", timeout=60000)
        widths = _wait_images(page, 2)
        assert len([w for w in widths if w > 0]) >= 2, widths  # the poster and the before/after preview
        screenshot(page, "prefect-ui-recipient-artifact")
        play = page.get_attribute("a:has-text('play grace.mp4')", "href")
        assert play == video
        player = chromium.new_page()
        try:  # the link plays the video in the browser's own player
            player.goto(play)
            player.wait_for_function(VIDEO_READY, timeout=30000)
        finally:
            player.close()
    finally:
        page.close()


def test_recipient_run_on_a_gs_home_has_signed_links_that_open(prefect_stack, gcs_bucket: str, tmp_path: Path) -> None:  # noqa: ANN001, F811
    """The same run with the stack's worker on a gs:// home (the GCS emulator) and a service account
    that signs: the artifact's links are V4 signed URLs that answer."""
    import os

    from tests.test_share_gcs import _key_file

    template = write_template(tmp_path / "tpl")
    env = {
        "LOOM_HOME": f"{gcs_bucket}/stack-home",
        "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"],
        "GOOGLE_APPLICATION_CREDENTIALS": str(_key_file(tmp_path)),
        "LOOM_CACHE_DIR": str(tmp_path / "cache"),
    }
    with api(prefect_stack) as client:
        dep = deployment_id(client, "personalize-recipient", "personalize-recipient")
        params = {"template": str(template), "data": {"client_name": "Hedy", "company_name": "Lamarr"}, "output": f"{gcs_bucket}/out/hedy.mp4"}
        run = wait_for_run(client, create_run(client, dep, {"parameters": params, "job_variables": {"env": env}})["id"])
        assert run["state"]["type"] == "COMPLETED", run["state"]
        (summary,) = [a for a in artifacts_of(client, [run["id"]]) if (a["key"] or "").startswith("recipient-")]
    markdown = summary["data"]
    for name, kind in (("preview", "image/png"), ("poster", "image/jpeg")):
        url = re.search(rf"!\[{name}\]\(([^)]+)\)", markdown).group(1)
        assert url.startswith(env["STORAGE_EMULATOR_HOST"]) and "X-Goog-Signature=" in url
        resp = httpx.get(url)
        assert resp.status_code == 200 and resp.headers["content-type"] == kind, name
    video = re.search(r"\*\*Video:\*\* \[[^\]]*\]\(([^)]+)\)", markdown).group(1)
    assert "X-Goog-Signature=" in video
    resp = httpx.get(video, headers={"Range": "bytes=0-1023"})
    assert resp.status_code == 206 and resp.headers["content-type"] == "video/mp4" and len(resp.content) == 1024


def test_share_page_email_snippet_and_campaign_page_in_chromium(chromium, tmp_path: Path) -> None:  # noqa: ANN001, F811
    from loom.campaign import campaign_id, plan_campaign, run_campaign_locally
    from loom.links import browser_url, campaign_page_url
    from loom.pipeline import template_version
    from loom.template import load_template

    template = write_template(tmp_path / "tpl", size=(320, 240))
    rows = [{"client_name": "Ada", "company_name": "Analytical"}, {"client_name": "Linus", "company_name": "Kernel"}]
    sheet = write_sheet(tmp_path / "sheet.csv", rows)
    with serving(tmp_path / "home"):
        tpl = load_template(str(template))
        plan = run_campaign_locally(plan_campaign(tpl, template_version(tpl), str(sheet), str(tmp_path / "out")))
        done = [e for e in plan.entries if e.status == "done"]
        assert len(done) == 2
        page = chromium.new_page(viewport={"width": 1200, "height": 900})
        try:
            page.goto(done[0].share_url)
            assert page.title() == "A video for Ada"
            page.wait_for_function(VIDEO_READY, timeout=30000)
            poster = page.get_attribute("video", "poster")
            width = page.evaluate("async (src) => { const i = new Image(); i.src = src; await i.decode(); return i.naturalWidth; }", poster)
            assert width == 320
            page.evaluate("() => document.querySelector('video').play()")
            page.wait_for_function("() => document.querySelector('video').currentTime > 0.2", timeout=30000)
            screenshot(page, "share-page")

            stem = done[0].output_uri[: -len(".mp4")]
            page.goto(browser_url(f"{stem}.email.html"))
            assert _wait_images(page, 1)[0] > 0
            assert "Ada" in page.get_attribute("img", "alt")
            assert page.evaluate(GIF_FRAMES, page.get_attribute("img", "src")) >= 10
            assert page.get_attribute("a", "href") == done[0].share_url
            screenshot(page, "email-snippet")

            page.goto(campaign_page_url(campaign_id(plan.output_dir)))
            widths = _wait_images(page, 2)
            assert len(widths) == 2 and all(w > 0 for w in widths), widths
            assert page.locator("#rows tbody tr").count() == 2
            screenshot(page, "campaign-page")
        finally:
            page.close()
