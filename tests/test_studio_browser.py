"""A person's path through the studio in a real browser (Debian's chromium driven by pip's
playwright): sign in, upload a recording made here, draw a text box and an image box with the
mouse, mark a voice window on the waveform, see a message for a bad value, save, try a recipient
and play it. No JSON is typed. Screenshots are kept under ``tests/output/screenshots/studio/``."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from app.api import create_app
from app.stack import free_port
from loom.settings import LoomSettings, reload_settings
from testkit.media import make_clip

pytestmark = pytest.mark.e2e

KEY = "studio-browser-key-0123456789"
ARTIFACTS = Path(__file__).resolve().parent / "output" / "screenshots" / "studio"


@pytest.fixture
def studio_url(loom_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import uvicorn

    monkeypatch.delenv("LOOM_ALLOWED_ROOTS")
    loom_home.mkdir(parents=True, exist_ok=True)
    reload_settings()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(LoomSettings(api_keys=SecretStr(KEY)), rate_limit_per_minute=0), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the studio server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def page() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed (setup.sh installs it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        yield browser.new_page(viewport={"width": 1400, "height": 1000})
        browser.close()


def _drag(page, selector: str, start: tuple[float, float], end: tuple[float, float]) -> dict:  # noqa: ANN001
    box = page.locator(selector).bounding_box()
    page.mouse.move(box["x"] + start[0], box["y"] + start[1])
    page.mouse.down()
    page.mouse.move(box["x"] + (start[0] + end[0]) / 2, box["y"] + (start[1] + end[1]) / 2, steps=4)
    page.mouse.move(box["x"] + end[0], box["y"] + end[1], steps=4)
    page.mouse.up()
    return box


def test_a_person_makes_a_template_without_typing_json(studio_url: str, page, loom_home: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from PIL import Image

    from loom.pipeline import personalize
    from loom.template import load_template, parse_template
    from loom.visual.tracking import segment_box

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    recording = make_clip(tmp_path / "Demo Take 3.mp4", seconds=3.0, size=(320, 240))
    (loom_home / "logos").mkdir()
    Image.new("RGB", (60, 40), (20, 180, 90)).save(loom_home / "logos" / "globex.png")

    page.goto(f"{studio_url}/studio")
    page.fill("#key", KEY)
    page.click("#signin-button")
    page.wait_for_selector("#upload")
    page.set_input_files("#upload", str(recording))
    page.wait_for_selector("#editor:not([hidden])")
    page.wait_for_function("document.getElementById('frame').naturalWidth > 0")
    page.wait_for_function("document.getElementById('wave').width > 0")

    # A text box at the start, drawn by mouse on the frame (640 px on screen for a 320 px video).
    frame_box = _drag(page, "#overlay", (64, 32), (320, 80))
    page.wait_for_selector('.seg[data-kind="visual_segments"][data-index="0"]')
    # Scrub to frame 15 (0.6 s), draw the logo's box there, make it an image box.
    page.locator("#scrub").fill("15")
    page.wait_for_function("document.getElementById('time').textContent.startsWith('0.60')")
    _drag(page, "#overlay", (400, 300), (560, 420))
    image_card = page.locator('.seg[data-kind="visual_segments"][data-index="1"]')
    image_card.locator('select[data-attr="segment_type"]').select_option("image")
    image_card.locator('input[data-attr="placeholder_key"]').fill("logo")
    image_card.locator('input[data-attr="placeholder_key"]').dispatch_event("change")
    # The logo leaves at 2.4 s: scrub there and press "end here".
    page.locator("#scrub").fill("60")
    page.wait_for_function("document.getElementById('time').textContent.startsWith('2.40')")
    image_card.click()
    page.click("#end-here")
    # A voice window from about 0.4 s to 1.4 s, selected on the waveform.
    wave = page.locator("#wave").bounding_box()
    _drag(page, "#wave", (wave["width"] * 0.4 / 3.0, 40), (wave["width"] * 1.4 / 3.0, 40))
    page.click("#add-voice")
    voice_card = page.locator('.seg[data-kind="voice_segments"][data-index="0"]')
    voice_card.wait_for()
    # A bad value gets its message next to the field; fixing it clears it.
    end = voice_card.locator('input[data-attr="end_time"]')
    good_end = end.input_value()
    end.fill("9")
    end.dispatch_event("change")
    message = page.locator('.seg[data-kind="voice_segments"][data-index="0"] .error[data-attr="end_time"]')
    message.wait_for(state="visible")
    assert "is after the end of the video" in message.inner_text()
    page.screenshot(path=str(ARTIFACTS / "1-validation.png"))
    voice_card = page.locator('.seg[data-kind="voice_segments"][data-index="0"]')
    voice_card.locator('input[data-attr="end_time"]').fill(good_end)
    voice_card.locator('input[data-attr="end_time"]').dispatch_event("change")
    page.wait_for_function("!document.querySelector('.seg[data-kind=\"voice_segments\"] .error[data-attr=\"end_time\"]').textContent")
    page.locator('.seg[data-kind="voice_segments"][data-index="0"] input[data-attr="lipsync"]').uncheck()
    # The engine's track for the text box, drawn on the frame.
    page.locator('.seg[data-kind="visual_segments"][data-index="0"] button.track').click()
    page.wait_for_function("document.querySelector('.seg[data-kind=\"visual_segments\"] button.track').textContent.startsWith('track:')")
    page.fill("#tpl-id", "studio-demo")
    page.dispatch_event("#tpl-id", "change")
    page.screenshot(path=str(ARTIFACTS / "2-boxes.png"))

    page.click("#save")
    page.wait_for_function("document.getElementById('save-status').textContent.includes('saved and prepared')", timeout=120_000)
    page.wait_for_selector("#try:not([hidden])")
    # Values from a row of a sheet: the second row fills the fields.
    sheet = tmp_path / "leads.csv"
    sheet.write_text("client_name,company_name,logo\nAda,Globex,logos/globex.png\nGrace,Initech,logos/globex.png\n")
    page.set_input_files("#try-sheet", str(sheet))
    page.wait_for_selector("#try-row:not([hidden])")
    page.select_option("#try-row", "1")
    assert page.input_value('#try-values input[data-key="client_name"]') == "Grace"
    assert page.input_value('#try-values input[data-key="logo"]') == "logos/globex.png"
    page.click("#try-run")
    page.wait_for_function("document.getElementById('try-status').textContent.startsWith('made in')", timeout=120_000)
    page.wait_for_function("document.getElementById('result').readyState >= 2", timeout=30_000)
    page.wait_for_function("document.getElementById('result-preview').naturalWidth > 0", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "3-tried.png"), full_page=True)

    # What was stored is a template `loom personalize` accepts ...
    stored = load_template("studio-demo")
    result = personalize(stored, {"client_name": "Grace", "company_name": "Initech", "logo": "logos/globex.png"})
    assert Path(result.output_uri).is_file()
    # ... and the same as the one a person would write by hand from the same points and times.
    scale = frame_box["width"] / 320  # screen pixels per video pixel
    by_hand = parse_template(
        {
            "id": "by-hand",
            "base_video_path": str(stored.base_video_path),
            "voice_segments": [{"id": "line1", "start_time": 0.4, "end_time": 1.4, "template_text": "Hi {client_name}!", "lipsync": False}],
            "visual_segments": [
                {"id": "box1", "segment_type": "text", "placeholder_key": "company_name", "start_time": 0.0, "end_time": 2.0,
                 "x": 64 / scale / 320, "y": 32 / scale / 240, "width": 256 / scale / 320, "height": 48 / scale / 240},
                {"id": "box2", "segment_type": "image", "placeholder_key": "logo", "start_time": 0.6, "end_time": 2.4,
                 "x": 400 / scale / 320, "y": 300 / scale / 240, "width": 160 / scale / 320, "height": 120 / scale / 240},
            ],
        }
    )
    from loom.media.probe import probe_video

    info = probe_video(str(stored.base_video_path))
    frame = 1 / float(info.frame_rate)
    for made, written in zip(stored.visual_segments, by_hand.visual_segments, strict=True):
        assert made.segment_type == written.segment_type and made.placeholder_key == written.placeholder_key
        for a, b in zip(segment_box(made, info), segment_box(written, info), strict=True):
            assert abs(a - b) <= 0.5, (made.id, segment_box(made, info), segment_box(written, info))
        assert abs(made.start_time - written.start_time) <= frame and abs(made.end_time - written.end_time) <= frame
    (voice,) = stored.voice_segments
    assert abs(voice.start_time - 0.4) <= frame and abs(voice.end_time - 1.4) <= frame
    (ARTIFACTS / "template.json").write_text(json.dumps(stored.model_dump(), indent=2))
