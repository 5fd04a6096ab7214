"""Links that open, the assets sent with a video, its share page and what it cost: one video made
with ``loom.pipeline.personalize`` against ``loom serve``'s app on a free port."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from loom import links, shares
from testkit.campaign_inputs import write_template
from testkit.media import decode_rgb, psnr
from tests.web_fixtures import API_KEY, serving


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, object, Path]]:
    from loom.pipeline import personalize

    root = tmp_path_factory.mktemp("share")
    with serving(root / "home") as server:
        template = write_template(root / "tpl", seconds=3.0, size=(320, 240))
        result = personalize(str(template), {"client_name": "Ada", "company_name": "Acme"}, str(root / "out" / "ada.mp4"))
        yield server, result, template


def test_video_link_answers_a_byte_range_with_206_and_a_video_type(site) -> None:  # noqa: ANN001
    server, result, _ = site
    url = result.links["video"]
    assert url.startswith(server.url + "/media/")
    whole = Path(result.output_uri).read_bytes()
    part = httpx.get(url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.headers["content-type"] == "video/mp4"
    assert part.headers["content-range"] == f"bytes 100-1099/{len(whole)}" and part.content == whole[100:1100]
    full = httpx.get(url)
    assert full.status_code == 200 and full.content == whole and full.headers["accept-ranges"] == "bytes"


def test_preview_and_poster_links_answer_with_pictures(site) -> None:  # noqa: ANN001
    _, result, _ = site
    for name, kind in (("preview", "image/png"), ("poster", "image/jpeg"), ("gif", "image/gif")):
        resp = httpx.get(result.links[name])
        assert resp.status_code == 200 and resp.headers["content-type"] == kind, name
        assert Image.open(io.BytesIO(resp.content)).width > 0


def test_a_tampered_expired_or_unsigned_link_is_refused(site) -> None:  # noqa: ANN001
    server, result, _ = site
    url = result.links["video"]
    encoded, expires, signature = urlsplit(url).path.split("/")[2].split(".")
    other = links.media_token(str(Path(result.output_uri).parent / "ada.json"), int(expires)).split(".")[0]
    forged = url.replace(f"{encoded}.", f"{other}.")  # another file under the same signature
    assert httpx.get(forged).status_code == 403
    flipped = url.replace(signature, ("A" if signature[0] != "A" else "B") + signature[1:])
    assert httpx.get(flipped).status_code == 403
    expired = links.media_token(result.output_uri, int(time.time()) - 1)
    assert httpx.get(f"{server.url}/media/{expired}/ada.mp4").status_code == 403
    assert httpx.get(f"{server.url}/media/not-a-token/ada.mp4").status_code == 403


def test_the_gif_is_animated_email_sized_badged_and_under_2_mb(site) -> None:  # noqa: ANN001
    _, result, _ = site
    gif = Path(result.gif_uri)
    assert gif.name == "ada.gif" and gif.parent == Path(result.output_uri).parent
    assert gif.stat().st_size <= 2 * 1024 * 1024
    image = Image.open(gif)
    assert image.n_frames >= 10 and image.width <= 600 and image.info.get("loop") == 0
    frames = []
    for i in range(image.n_frames):
        image.seek(i)
        frames.append(np.asarray(image.convert("RGB"), dtype=np.int16))
    assert max(np.abs(f - frames[0]).mean() for f in frames[1:]) > 2  # it moves
    cy, cx = frames[0].shape[0] // 2, frames[0].shape[1] // 2
    assert all(f[cy, cx].min() > 200 for f in frames)  # the play badge's white triangle, on every frame


def test_the_poster_is_the_output_frame_where_the_name_is_spoken_and_shown(site) -> None:  # noqa: ANN001
    from loom.media.share_assets import poster_frame
    from loom.pipeline import load_prepared
    from loom.template import load_template

    _, result, template = site
    prepared = load_prepared(load_template(str(template)))
    index = poster_frame(prepared)
    assert 1.0 <= index / 25 < 2.4  # inside the spoken line and the on-screen company name
    poster = np.asarray(Image.open(result.poster_uri).convert("RGB"))
    frame = decode_rgb(Path(result.output_uri))[index]
    assert poster.shape == frame.shape and psnr(poster, frame) > 30


def test_the_email_snippet_links_the_gif_to_the_share_page_and_names_the_recipient(site) -> None:  # noqa: ANN001
    _, result, _ = site
    html = Path(result.email_uri).read_text()
    assert Path(result.email_uri).name == "ada.email.html"
    share, gif = result.links["share"], result.links["gif"]
    assert f'<a href="{share}"' in html and f'src="{gif}"' in html
    assert re.search(r'alt="[^"]*Ada[^"]*"', html)
    assert httpx.get(gif).status_code == 200 and httpx.get(share).status_code == 200


def test_the_share_page_has_the_player_poster_title_and_open_graph_tags_and_records_views(site) -> None:  # noqa: ANN001
    _, result, _ = site
    before = len(shares.views(result.share_token))
    page = httpx.get(result.links["share"], headers={"User-Agent": "share-test-agent/1.0"})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    assert "<title>A video for Ada</title>" in html
    for tag in ("og:title", "og:image", "og:video", "og:url"):
        assert f'property="{tag}"' in html, tag
    video = re.search(r'<video[^>]* poster="([^"]+)" src="([^"]+)"', html)
    assert video is not None
    poster, src = (s.replace("&amp;", "&") for s in video.groups())
    assert httpx.get(poster).headers["content-type"] == "image/jpeg"
    assert httpx.get(src, headers={"Range": "bytes=0-99"}).status_code == 206
    seen = shares.views(result.share_token)
    assert len(seen) == before + 1 and seen[-1].user_agent == "share-test-agent/1.0"


def test_share_tokens_are_unguessable_and_a_revoked_share_answers_410(site) -> None:  # noqa: ANN001
    server, result, _ = site
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", result.share_token)
    second = shares.create_share(result.output_uri, "Ada", "t", "k")
    assert second.token != result.share_token
    assert httpx.get(links.share_page_url(second.token)).status_code == 200
    shares.revoke_share(second.token)
    assert httpx.get(links.share_page_url(second.token)).status_code == 410
    assert httpx.get(f"{server.url}/v/{'x' * 24}").status_code == 404
    assert httpx.get(f"{server.url}/v/..%2F..%2Fsecrets").status_code == 404
    assert httpx.get(result.links["share"]).status_code == 200  # the others still open


def test_the_record_holds_the_cost_of_each_step_and_a_price_from_the_rates(site) -> None:  # noqa: ANN001
    from loom.settings import get_settings

    _, result, _ = site
    record = json.loads(Path(result.record_uri).read_text())
    cost = record["cost"]
    steps = {s["step"] for s in cost["steps"]}
    assert {"voice:greeting", "visual:logo", "render", "share_assets", "share_page"} <= steps
    assert all(s["wall_s"] >= 0 and s["cpu_s"] >= 0 for s in cost["steps"])
    assert cost["cpu_s"] > 0 and cost["wall_s"] >= max(s["wall_s"] for s in cost["steps"])
    assert cost["tts_characters"] == {"espeak": len("Hi Ada!")}  # the offline voice: counted, not priced
    assert cost["price_tts"] == 0
    assert cost["price_cpu"] == pytest.approx(cost["cpu_s"] * get_settings().price_cpu_second, abs=2e-6)
    assert set(record["links"]) >= {"video", "poster", "gif", "email", "share", "preview", "record"}
    assert "file://" not in json.dumps(record["links"])


def test_characters_sent_to_a_paid_voice_are_priced(monkeypatch: pytest.MonkeyPatch) -> None:
    from loom import costs
    from loom.settings import reload_settings

    monkeypatch.setenv("LOOM_PRICE_TTS_CHARACTER", "0.001")
    monkeypatch.setenv("LOOM_PRICE_CPU_SECOND", "0")
    reload_settings()
    try:
        with costs.measuring() as ledger:
            costs.characters_sent("elevenlabs", 120)
            costs.characters_sent("espeak", 50)
        summary = ledger.summary()
    finally:
        monkeypatch.undo()
        reload_settings()
    assert summary.tts_characters == {"elevenlabs": 120, "espeak": 50}
    assert summary.price_tts == pytest.approx(0.12) and summary.price_total == pytest.approx(0.12)


def test_the_recipient_artifact_shows_the_poster_inline_and_links_that_open(site) -> None:  # noqa: ANN001
    from loom.pipeline import load_prepared
    from loom.template import load_template
    from tasks.artifacts import summary_markdown

    _, result, template = site
    markdown = summary_markdown(load_prepared(load_template(str(template))), result)
    assert "file://" not in markdown
    poster = re.search(r"!\[poster\]\(([^)]+)\)", markdown)
    video = re.search(r"\[▶ play ada.mp4\]\(([^)]+)\)", markdown)
    assert poster is not None and video is not None
    assert httpx.get(poster.group(1)).headers["content-type"] == "image/jpeg"
    assert httpx.get(video.group(1), headers={"Range": "bytes=0-9"}).status_code == 206


def test_the_jobs_api_output_url_of_a_local_file_opens(site) -> None:  # noqa: ANN001
    from app import jobs

    server, result, _ = site
    url = jobs.output_url(result.output_uri)
    assert url is not None and url.startswith(server.url)
    assert httpx.get(url, headers={"Range": "bytes=0-9"}).status_code == 206
    assert API_KEY  # the app refuses the jobs routes without a key; media links need none
    assert httpx.get(f"{server.url}/templates").status_code == 401


def test_the_jobs_api_shows_a_jobs_links_and_its_share_page_views(site) -> None:  # noqa: ANN001
    import datetime as dt
    import uuid

    from app import jobs

    _, result, _ = site
    httpx.get(result.links["share"], headers={"User-Agent": "jobs-view-agent"})
    record = jobs.JobRecord(id=str(uuid.uuid4()), kind="recipient", template_id="flowdemo", owner="o", created_at=dt.datetime.now(dt.timezone.utc))
    found, seen = jobs._links_and_views(record, result.output_uri)
    assert found["share"] == result.links["share"] and set(found) >= {"video", "poster", "gif", "email", "preview"}
    assert httpx.get(found["poster"]).status_code == 200
    assert seen and seen[-1]["user_agent"] == "jobs-view-agent" and dt.datetime.fromisoformat(seen[-1]["at"])
    assert set(jobs.JobView.model_fields) >= {"links", "views"}


def test_revoke_share_from_the_cli_and_an_unknown_token_is_one_line_exit_2(site) -> None:  # noqa: ANN001
    import os
    import subprocess
    import sys

    server, result, _ = site
    spare = shares.create_share(result.output_uri, "Ada", "t", "k")
    env = {**os.environ, "LOOM_HOME": str(server.home), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    loom = [sys.executable, "-m", "app.cli", "revoke-share"]
    done = subprocess.run([*loom, spare.token], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert httpx.get(links.share_page_url(spare.token)).status_code == 410
    unknown = subprocess.run([*loom, "A" * 24], capture_output=True, text=True, env=env, timeout=120)
    assert unknown.returncode == 2 and unknown.stderr.strip().splitlines() == [f"error: token: no share '{'A' * 24}' (check the link's last part)"]
    malformed = subprocess.run([*loom, "../etc"], capture_output=True, text=True, env=env, timeout=120)
    assert malformed.returncode == 2 and "Traceback" not in malformed.stderr


def test_share_tokens_can_be_typed_on_the_command_line() -> None:
    """One token in 64 drawn plainly starts with '-', which a command line reads as an option."""
    from loom.shares import new_token

    tokens = {new_token() for _ in range(3000)}
    assert len(tokens) == 3000 and not any(t.startswith("-") for t in tokens)
