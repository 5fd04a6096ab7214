"""``loom demo``: a base recording made on the spot, a template, a 3-row sheet, the campaign.

The recording shows a presenter on camera beside a screen with a name plate (which scrolls)
and a logo, and speaks with the offline voice. Everything is made locally: no key, no network.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import manimgx_fonts
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.signal import resample_poly

from loom import storage
from loom.campaign import plan_campaign, run_campaign_locally
from loom.errors import RecipientFailed
from loom.media.frames import read_frames
from loom.media.muxing import mux_frames, planar_frames
from loom.media.probe import probe_video
from loom.pipeline import template_version
from loom.template import load_template
from loom.voice.offline import speak_offline

SIZE = (640, 360)
FPS = 25
SAMPLE_RATE = 48000
GREETING_AT = 0.6  # seconds into the recording where "Hello Acme Corp!" begins
PLATE_TEXT = "Acme Corp"
NARRATION = (
    "Thanks for taking a look at better loom. This dashboard shows your team's week at a glance, "
    "and every chart updates live."
)
DEMO_ROWS = [
    {"client_name": "Ada", "company_name": "Globex", "logo_color": "#2a9d8f"},
    {"client_name": "Grace", "company_name": "Initech Systems", "logo_color": "#e76f51"},
    {"client_name": "Zoë", "company_name": "Zoë Ñúñez & Co", "logo_color": "#6a4c93"},
    {"client_name": "Linus", "company_name": "Umbrella", "logo_color": "#264653"},
    {"client_name": "Margaret", "company_name": "Hooli", "logo_color": "#f4a261"},
]


@dataclass
class DemoResult:
    folder: Path
    template_path: Path
    sheet_path: Path
    videos: list[str] = field(default_factory=list)
    contact_sheets: list[str] = field(default_factory=list)
    manifest: str = ""


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    font = ImageFont.truetype(str(Path(manimgx_fonts.__file__).parent / "NotoSans[wght].ttf"), size)
    try:
        font.set_variation_by_axes([700 if bold else 400])
    except (OSError, ValueError):
        pass
    return font


def _narration() -> tuple[np.ndarray, float, float]:
    """Mono 48 kHz speech: the greeting, a pause, the rest. Returns (samples, greeting end, total)."""

    def spoken(text: str) -> np.ndarray:
        audio = speak_offline(text)
        g = np.gcd(SAMPLE_RATE, audio.sample_rate)
        return resample_poly(audio.samples, SAMPLE_RATE // g, audio.sample_rate // g).astype(np.float32)

    greeting = spoken(f"Hello {PLATE_TEXT}!")
    rest = spoken(NARRATION)
    pause = np.zeros(int(0.9 * SAMPLE_RATE), np.float32)
    lead = np.zeros(int(GREETING_AT * SAMPLE_RATE), np.float32)
    tail = np.zeros(int(0.8 * SAMPLE_RATE), np.float32)
    speech = np.concatenate([lead, greeting, pause, rest, tail])
    rng = np.random.default_rng(7)
    room = rng.normal(0, 0.002, speech.shape).astype(np.float32)  # a little room tone, like a real mic
    greeting_end = (len(lead) + len(greeting)) / SAMPLE_RATE
    return np.clip(speech * 0.6 + room, -1, 1), greeting_end, len(speech) / SAMPLE_RATE


def _envelope(samples: np.ndarray, frames: int) -> np.ndarray:
    hop = SAMPLE_RATE // FPS
    env = np.array([np.abs(samples[i * hop : (i + 1) * hop]).mean() if i * hop < len(samples) else 0 for i in range(frames)])
    return np.clip(env / (env.max() + 1e-9), 0, 1)


def _plate_y(t: float, start: float, end: float) -> float:
    """The page scrolls up while the plate is on screen (so the visual must be tracked)."""
    if t <= start + 1.0:
        return 190.0
    if t >= end - 1.0:
        return 120.0
    return 190.0 - 70.0 * (t - start - 1.0) / (end - start - 2.0)


def _frame(t: float, mouth: float, plate_span: tuple[float, float], fonts: dict[str, Any]) -> np.ndarray:
    w, h = SIZE
    img = Image.new("RGB", SIZE, (38, 41, 48))
    d = ImageDraw.Draw(img)
    # camera: presenter
    d.rectangle([12, 40, 250, 320], fill=(70, 86, 104))
    d.ellipse([70, 80, 190, 230], fill=(224, 182, 150))  # face
    d.rectangle([60, 230, 200, 320], fill=(40, 60, 120))  # shoulders
    d.ellipse([95, 130, 115, 145], fill=(40, 30, 30))
    d.ellipse([145, 130, 165, 145], fill=(40, 30, 30))
    d.arc([100, 100, 120, 120], 200, 340, fill=(90, 60, 40), width=3)
    d.arc([140, 100, 160, 120], 200, 340, fill=(90, 60, 40), width=3)
    open_px = 2 + 14 * mouth
    d.ellipse([110, 185 - open_px / 2, 150, 185 + open_px / 2], fill=(120, 40, 50))
    d.text((20, 296), "camera", font=fonts["small"], fill=(200, 200, 200))
    # screen: a browser page
    d.rectangle([270, 40, 628, 320], fill=(246, 247, 250))
    d.rectangle([270, 40, 628, 62], fill=(210, 214, 222))
    for i, c in enumerate([(237, 106, 94), (245, 191, 79), (98, 197, 84)]):
        d.ellipse([278 + i * 14, 46, 288 + i * 14, 56], fill=c)
    d.text((330, 44), "app.betterloom.io/dashboard", font=fonts["small"], fill=(80, 80, 90))
    y = _plate_y(t, *plate_span)
    # page content scrolls with the plate
    for k in range(6):
        yy = y + 70 + k * 26
        if 70 < yy < 310:
            d.rectangle([290, yy, 290 + 220 - k * 25, yy + 10], fill=(200, 206, 218))
    if 62 < y < 300:
        d.rounded_rectangle([290, y, 470, y + 44], radius=8, fill=(222, 235, 255))
        d.text((380, y + 22), PLATE_TEXT, font=fonts["plate"], fill=(20, 40, 90), anchor="mm")
    # logo (static, top right of the page)
    d.rectangle([540, 72, 612, 144], fill=(246, 247, 250))
    d.ellipse([546, 78, 606, 138], fill=(250, 140, 30))
    d.text((576, 108), "A", font=fonts["logo"], fill=(255, 255, 255), anchor="mm")
    return np.asarray(img)


def make_base_recording(path: Path) -> dict[str, float]:
    """Write the demo's H.264/AAC recording and return the times its template needs."""

    speech, greeting_end, total = _narration()
    frames = int(np.ceil(total * FPS))
    env = _envelope(speech, frames)
    plate_span = (1.0, min(total - 0.5, 8.0))
    fonts = {"small": _font(11), "plate": _font(20, bold=True), "logo": _font(30, bold=True)}
    stereo = np.stack([speech, speech])
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        vs.options = {"crf": "18", "preset": "fast", "g": str(2 * FPS)}
        aus = out.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        def pictures() -> Iterator[av.VideoFrame]:
            for i in range(frames):
                frame = av.VideoFrame.from_ndarray(_frame(i / FPS, float(env[i]), plate_span, fonts), format="rgb24")
                frame.pts = i
                frame.time_base = Fraction(1, FPS)
                yield frame

        mux_frames(out, vs, pictures())
        chunk = 1024
        n = frames * SAMPLE_RATE // FPS
        audio = np.zeros((2, n), np.float32)
        audio[:, : min(n, stereo.shape[1])] = stereo[:, :n]
        mux_frames(out, aus, planar_frames(audio, SAMPLE_RATE, "stereo", chunk))
    return {"greeting_end": greeting_end, "duration": frames / FPS, "plate_start": plate_span[0], "plate_end": plate_span[1]}


def make_logo(path: Path, text: str, color: str) -> Path:
    """A round logo with the company's initial, on a transparent background."""
    img = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.ellipse([8, 8, 248, 248], fill=color)
    d.text((128, 132), text[:1].upper(), font=_font(150, bold=True), fill=(255, 255, 255, 255), anchor="mm")
    img.save(path)
    return path


def demo_template(video: Path, times: dict[str, float]) -> dict[str, Any]:
    w, h = SIZE
    return {
        "id": "better-loom-demo",
        "name": "better-loom demo",
        "base_video_path": video.name,
        "voice_id": "presenter",
        "voice_segments": [
            {
                "id": "greeting",
                "start_time": round(GREETING_AT - 0.3, 3),
                "end_time": round(times["greeting_end"] + 0.7, 3),
                "template_text": "Hello {client_name}!",
            }
        ],
        "visual_segments": [
            {
                "id": "name-plate",
                "segment_type": "text",
                "start_time": times["plate_start"],
                "end_time": times["plate_end"],
                "x": 296 / w, "y": 195 / h, "width": 168 / w, "height": 34 / h,
                "placeholder_key": "company_name",
            },
            {
                "id": "logo",
                "segment_type": "image",
                "start_time": times["plate_start"],
                "end_time": times["plate_end"],
                "x": 540 / w, "y": 72 / h, "width": 72 / w, "height": 72 / h,
                "placeholder_key": "logo",
            },
        ],
    }


def contact_sheet(video_uri: str, out_png: str, columns: int = 4, rows: int = 2) -> str:
    """A grid of evenly spaced frames with their times: one look at a whole video."""

    info = probe_video(video_uri)
    count = columns * rows
    picks = [int(i * (info.frame_count - 1) / (count - 1)) for i in range(count)]
    tiles = []
    for index in picks:
        for _, frame in read_frames(video_uri, index, index + 1):
            tiles.append((index, Image.fromarray(frame)))
    tw, th = info.width // 2, info.height // 2
    sheet = Image.new("RGB", (columns * tw, rows * (th + 18)), (20, 20, 20))
    d = ImageDraw.Draw(sheet)
    font = _font(12)
    fps = info.frame_rate
    for k, (index, tile) in enumerate(tiles):
        x, y = (k % columns) * tw, (k // columns) * (th + 18)
        sheet.paste(tile.resize((tw, th)), (x, y))
        d.text((x + 4, y + th + 2), f"{float(index / fps):5.2f}s  frame {index}", font=font, fill=(230, 230, 230))
    with storage.staged_output(out_png, ".png") as path:
        sheet.save(path)
    return out_png


def run_demo(folder: Path, rows: int = 3, console: Any = None) -> DemoResult:
    """Make everything the demo needs in ``folder`` and run its campaign without Prefect."""

    def say(text: str) -> None:
        if console is not None:
            console.print(text)

    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    video = folder / "base.mp4"
    say("recording the base video (offline voice)...")
    times = make_base_recording(video)
    template_path = folder / "template.json"
    template_path.write_text(json.dumps(demo_template(video, times), indent=2, ensure_ascii=False))
    logos = folder / "logos"
    logos.mkdir(exist_ok=True)
    sheet_path = folder / "recipients.csv"
    with sheet_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["client_name", "company_name", "logo"])
        writer.writeheader()
        for row in DEMO_ROWS[:rows]:
            logo = make_logo(logos / f"{row['client_name'].lower()}.png", row["company_name"], row["logo_color"])
            writer.writerow({"client_name": row["client_name"], "company_name": row["company_name"], "logo": str(logo)})
    template = load_template(str(template_path))
    plan = plan_campaign(template, template_version(template), str(sheet_path), str(folder / "videos"))
    say(f"personalizing {len(plan.to_make)} recipients...")
    run_campaign_locally(plan, concurrency=2, on_progress=lambda e: say(f"  row {e.row.number}: {e.status} {e.error}"))
    result = DemoResult(folder=folder, template_path=template_path, sheet_path=sheet_path, manifest=plan.manifest_uri)
    for entry in plan.entries:
        if entry.status in ("done", "skipped"):
            result.videos.append(entry.output_uri)
            result.contact_sheets.append(contact_sheet(entry.output_uri, entry.output_uri[: -len(".mp4")] + ".contact.png"))
    failed = [e for e in plan.entries if e.status not in ("done", "skipped")]
    if failed:

        raise RecipientFailed(f"demo: {len(failed)} recipient(s) failed: " + "; ".join(e.error for e in failed))
    return result
