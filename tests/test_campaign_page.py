"""A campaign's page (``/campaigns/<id>``) and what ``loom campaign`` leaves beside every video."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from loom import links
from testkit.campaign_inputs import read_manifest, settle_as_copies, write_sheet, write_template
from tests.web_fixtures import serving

ROOT = Path(__file__).resolve().parents[1]


def _loom(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ELEVENLABS_", "PREFECT_API_URL"))}
    full.update({**env, "PYTHONPATH": str(ROOT)})
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, env=full, cwd=ROOT, timeout=600)


def test_cli_campaign_leaves_poster_gif_and_email_beside_every_video_and_a_page_that_lists_them(tmp_path: Path) -> None:
    template = write_template(tmp_path / "tpl")
    sheet = write_sheet(tmp_path / "sheet.csv", [
        {"client_name": "Grace", "company_name": "Hopper Labs"},
        {"client_name": "Alan", "company_name": "Turing Machines"},
        {"client_name": "Edsger"},  # no company: invalid, listed with its error
    ], ["client_name", "company_name"])
    out = tmp_path / "out"
    with serving(tmp_path / "home") as server:
        done = _loom("campaign", "--template", str(template), "--sheet", str(sheet), "--out", str(out), "--no-prefect",
                     env={"LOOM_HOME": str(server.home), "LOOM_PUBLIC_URL": server.url})
        assert done.returncode == 0, done.stderr
        lines = done.stdout.strip().splitlines()
        assert lines[-1] == str(out / "manifest.csv")
        page_url = next(line.split(": ", 1)[1] for line in lines if line.startswith("campaign page: "))

        videos = sorted(out.glob("*.mp4"))
        assert len(videos) == 2
        for video in videos:
            stem = video.with_suffix("")
            assert Path(f"{stem}.poster.jpg").stat().st_size > 0
            assert Path(f"{stem}.gif").read_bytes()[:6] == b"GIF89a"
            assert Path(f"{stem}.email.html").is_file()
        rows = {r["recipient"]: r for r in read_manifest(out / "manifest.csv")}
        for name in ("Grace", "Alan"):
            assert rows[name]["status"] == "done"
            assert httpx.get(rows[name]["video_url"], headers={"Range": "bytes=0-9"}).status_code == 206
            share = httpx.get(rows[name]["share_url"])
            assert share.status_code == 200 and f"A video for {name}" in share.text

        page = httpx.get(page_url)
        assert page.status_code == 200
        body = page.text.split("<tbody>")[1]
        assert body.count("<tr>") == 3
        assert body.count(">done<") == 2 and ">invalid<" in body and "company_name" in body
        posters = re.findall(r'<img loading="lazy" width="160" src="([^"]+)"', body)
        assert len(posters) == 2 and all(httpx.get(p.replace("&amp;", "&")).status_code == 200 for p in posters)
        assert body.count('class="share"') == 2
        assert sorted(re.findall(r'<span class="views">(\d+)</span>', body)) == ["1", "1"]  # the share pages opened above
        manifest = re.search(r'id="manifest" href="([^"]+)"', page.text).group(1)
        assert httpx.get(manifest.replace("&amp;", "&")).text.startswith("row,row_key,recipient,status")

        unsigned = page_url.split("?")[0]
        assert httpx.get(unsigned).status_code == 403
        assert httpx.get(page_url.replace("sig=", "sig=x")).status_code == 403


def test_the_page_lists_every_row_of_a_1000_row_campaign(tmp_path: Path) -> None:
    """A thousand rows settled as done, each with the record a real recipient left (copied: making
    a thousand videos is the benchmark's business, not a test's)."""
    from loom.campaign import ManifestWriter, plan_campaign
    from loom.pipeline import personalize, template_version
    from loom.template import load_template

    template = write_template(tmp_path / "tpl")
    rows = [{"client_name": f"Person {i}", "company_name": f"Company {i}"} for i in range(1000)]
    sheet = write_sheet(tmp_path / "sheet.csv", rows)
    with serving(tmp_path / "home") as server:
        tpl = load_template(str(template))
        made = personalize(tpl, rows[0], str(tmp_path / "made" / "first.mp4"))
        plan = plan_campaign(tpl, template_version(tpl), str(sheet), str(tmp_path / "out"))
        writer = ManifestWriter(plan)
        settle_as_copies(plan, made, writer)
        page = httpx.get(links.campaign_page_url(writer.campaign_id), timeout=60)
    assert page.status_code == 200
    body = page.text.split("<tbody>")[1]
    assert body.count("<tr>") == 1000 and body.count(">done<") == 1000
    assert "Person 0<" in body and "Person 999<" in body
    assert "1000 rows: 1000 done" in page.text
