"""What the per-video share assets cost, and how fast a 1,000-row campaign page loads.

    .venv/bin/python benchmarks/bench_share_assets.py [--recipients 4] [--rows 1000]

1. A 30 s 1280x720 30 fps H.264 recording with a spoken line and an on-screen name from 5 s; one
   recipient made first (prepare and caches), then ``--recipients`` more with ``personalize`` in
   this process. Each record's cost ledger gives the render step (the baseline) and the share
   steps (poster + GIF from the render's frames; share record + email snippet), wall and CPU.
2. A campaign of ``--rows`` rows, each settled with a copy of a real recipient's record, served by
   ``loom serve``'s app: the page's server time (best of 3) and its load in headless Chromium
   (navigation to the load event, lazy posters below the fold not included).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_render import make_recording  # noqa: E402


def template_for(src: Path, folder: Path) -> Path:
    template = {
        "id": "bench-share",
        "base_video_path": str(src),
        "voice_id": "presenter",
        "voice_segments": [{"id": "greeting", "start_time": 5.0, "end_time": 7.5, "template_text": "Hello {client_name}, thanks!"}],
        "visual_segments": [{"id": "name", "segment_type": "text", "start_time": 5.5, "end_time": 8.0,
                             "x": 0.05, "y": 0.05, "width": 0.3, "height": 0.1, "placeholder_key": "client_name"}],
    }
    path = folder / "template.json"
    path.write_text(json.dumps(template))
    return path


def step_costs(record: dict) -> dict[str, tuple[float, float]]:
    return {s["step"]: (s["wall_s"], s["cpu_s"]) for s in record["cost"]["steps"]}


def bench_assets(work: Path, recipients: int) -> None:
    from loom.pipeline import personalize

    src = make_recording(work / "rec.mp4", 30, (1280, 720))
    template = template_for(src, work)
    personalize(str(template), {"client_name": "Warm Up"}, str(work / "out" / "warm.mp4"))
    rows = []
    for i in range(recipients):
        started = time.perf_counter()
        result = personalize(str(template), {"client_name": f"Recipient {i}"}, str(work / "out" / f"r{i}.mp4"))
        wall = time.perf_counter() - started
        record = json.loads(Path(result.record_uri).read_text())
        costs = step_costs(record)
        rows.append({"wall": wall, "cpu": record["cost"]["cpu_s"], "render": costs["render"], "assets": costs["share_assets"], "page": costs["share_page"],
                     "gif": Path(result.gif_uri).stat().st_size, "poster": Path(result.poster_uri).stat().st_size,
                     "frames": record["render"]["share_assets"]["gif_frames"], "gif_size": (record["render"]["share_assets"]["gif_width"],
                                                                                      record["render"]["share_assets"]["gif_height"])})

    def med(f) -> float:  # noqa: ANN001
        return statistics.median(f(r) for r in rows)

    print(f"per recipient (median of {recipients}, 1280x720 30 fps, 30 s; load {os.getloadavg()[0]:.1f}):")
    print(f"  personalize, whole recipient     {med(lambda r: r['wall']):.3f} s wall")
    print(f"  render step (baseline)           {med(lambda r: r['render'][0]):.3f} s wall, {med(lambda r: r['render'][1]):.3f} CPU-s")
    print(f"  poster + GIF (share_assets)      {med(lambda r: r['assets'][0]):.3f} s wall, {med(lambda r: r['assets'][1]):.3f} CPU-s"
          f"  = {med(lambda r: r['assets'][0] / r['render'][0]):.2f}x the render's wall")
    print(f"  share record + email snippet     {med(lambda r: r['page'][0]) * 1000:.1f} ms wall")
    print(f"  share assets' CPU / recipient's  {med(lambda r: (r['assets'][1] + r['page'][1]) / r['cpu']):.1%}"
          f" (of {med(lambda r: r['cpu']):.2f} CPU-s; made beside the mux, so their wall mostly overlaps it)")
    first = rows[0]
    print(f"  GIF {first['frames']} frames {first['gif_size'][0]}x{first['gif_size'][1]}, {med(lambda r: r['gif']) / 1024:.0f} KiB;"
          f" poster {med(lambda r: r['poster']) / 1024:.0f} KiB")


def bench_page(work: Path, rows: int) -> None:
    import httpx
    from playwright.sync_api import sync_playwright

    from loom import links
    from loom.campaign import ManifestWriter, plan_campaign
    from loom.pipeline import personalize, template_version
    from loom.template import load_template
    from testkit.campaign_inputs import settle_as_copies, write_sheet, write_template
    from tests.web_fixtures import serving

    template = write_template(work / "tpl")
    sheet = write_sheet(work / "sheet.csv", [{"client_name": f"Person {i}", "company_name": f"Company {i}"} for i in range(rows)])
    with serving(work / "home") as server:
        tpl = load_template(str(template))
        made = personalize(tpl, {"client_name": "Person 0", "company_name": "Company 0"}, str(work / "made" / "first.mp4"))
        plan = plan_campaign(tpl, template_version(tpl), str(sheet), str(work / "campaign"))
        writer = ManifestWriter(plan)
        settle_as_copies(plan, made, writer)
        url = links.campaign_page_url(writer.campaign_id)
        server_times, size = [], 0
        for _ in range(3):
            started = time.perf_counter()
            resp = httpx.get(url, timeout=60)
            server_times.append(time.perf_counter() - started)
            size = len(resp.content)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            loads = []
            for _ in range(3):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                started = time.perf_counter()
                page.goto(url, wait_until="load")
                loads.append(time.perf_counter() - started)
                listed = page.locator("#rows tbody tr").count()
                page.close()
            browser.close()
    print(f"campaign page, {rows} rows ({size / 1024:.0f} KiB of HTML; load {os.getloadavg()[0]:.1f}):")
    print(f"  server answer (best of 3)        {min(server_times):.3f} s")
    print(f"  Chromium navigation to load      {min(loads):.3f} s (best of 3; {listed} rows listed)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=4)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-share-") as tmp:
        work = Path(tmp)
        os.environ["LOOM_HOME"] = str(work / "assets-home")
        os.environ.pop("ELEVENLABS_API_KEY", None)
        from loom.settings import reload_settings

        reload_settings()
        (work / "assets").mkdir()
        bench_assets(work / "assets", args.recipients)
        (work / "page").mkdir()
        bench_page(work / "page", args.rows)


if __name__ == "__main__":
    main()
