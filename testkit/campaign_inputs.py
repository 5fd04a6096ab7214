"""A tiny template and sheets for the flow tests and the campaign benchmark, and what the fake
ElevenLabs was asked."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from testkit.fake_elevenlabs import FakeElevenLabs
from testkit.media import make_clip

VOICE_ID = "presenter-voice"
API_KEY = "test-key"


def write_template(folder: Path, seconds: float = 3.0, size: tuple[int, int] = (160, 120)) -> Path:
    """A 3 s recording with one spoken line (lip-synced) and one on-screen company name."""
    folder.mkdir(parents=True, exist_ok=True)
    make_clip(folder / "base.mp4", seconds=seconds, size=size, fps=25)
    template = {
        "id": "flowdemo",
        "name": "flow demo",
        "base_video_path": "base.mp4",
        "voice_id": VOICE_ID,
        "voice_segments": [
            {"id": "greeting", "start_time": 0.4, "end_time": 2.4, "template_text": "Hi {client_name}!"},
        ],
        "visual_segments": [
            {
                "id": "logo",
                "segment_type": "text",
                "start_time": 1.0,
                "end_time": 2.6,
                "x": 0.1,
                "y": 0.1,
                "width": 0.5,
                "height": 0.2,
                "placeholder_key": "company_name",
            }
        ],
    }
    path = folder / "template.json"
    path.write_text(json.dumps(template))
    return path


def write_sheet(path: Path, rows: list[dict[str, str]], columns: list[str] | None = None) -> Path:
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def read_manifest(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def speech_requests(fake: FakeElevenLabs) -> int:
    return len(fake.requests_to("/text-to-speech/"))


def settle_as_copies(plan: object, made: object, writer: object) -> None:
    """Every row of ``plan`` settled ``done`` with a copy of one made recipient's video, poster and
    record: a campaign's pages at scale without making each video (tests and benchmarks)."""
    import shutil

    record = json.loads(Path(made.record_uri).read_text())  # type: ignore[attr-defined]
    for entry in plan.entries:  # type: ignore[attr-defined]
        stem = entry.output_uri[: -len(".mp4")]
        shutil.copyfile(made.output_uri, entry.output_uri)  # type: ignore[attr-defined]
        shutil.copyfile(made.poster_uri, f"{stem}.poster.jpg")  # type: ignore[attr-defined]
        Path(f"{stem}.json").write_text(json.dumps({**record, "output_uri": entry.output_uri, "poster_uri": f"{stem}.poster.jpg"}))
        writer.row_settled(plan.settle(entry.row.number, "done", share_url=made.links["share"]))  # type: ignore[attr-defined]
    writer.close()  # type: ignore[attr-defined]
