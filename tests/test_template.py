"""Template JSON in the seed's format: read unchanged, one clear message per problem."""

from __future__ import annotations

import json

import pytest

from loom.errors import InputError
from loom.template import load_template, parse_template, render_text
from tests.template_edits import edited

SEED = {
    "id": "acme-demo",
    "name": "Acme demo",
    "base_video_path": "base.mp4",
    "voice_id": "voice-123",
    "voice_segments": [
        {"id": "greeting", "start_time": 0.5, "end_time": 2.0, "template_text": "Hello {client_name}!"},
        {"id": "outro", "start_time": 5.0, "end_time": 7.0, "template_text": "See you at {company_name}."},
    ],
    "visual_segments": [
        {"id": "plate", "segment_type": "text", "start_time": 1, "end_time": 4, "x": 0.5, "y": 0.1,
         "width": 0.3, "height": 0.1, "placeholder_key": "company_name"},
        {"id": "logo", "segment_type": "image", "start_time": 1, "end_time": 4, "x": 0.8, "y": 0.8,
         "width": 0.1, "height": 0.1, "placeholder_key": "logo"},
    ],
}


def test_seed_format_reads_unchanged() -> None:
    t = parse_template(json.dumps(SEED))
    assert t.id == "acme-demo" and len(t.voice_segments) == 2 and t.visual_segments[1].segment_type == "image"
    assert t.placeholders() == ["client_name", "company_name", "logo"]
    assert t.image_keys() == {"logo"}


@pytest.mark.parametrize(
    ("path", "value", "expect"),
    [
        (["voice_segments", 0, "end_time"], 0.2, "must be after start_time"),
        (["voice_segments", 1, "start_time"], 1.0, "overlap"),
        (["visual_segments", 0, "x"], 0.9, "outside the frame"),
        (["id"], "../../x", "not a safe id"),
        (["voice_segments", 0, "id"], "a/b", "not a safe id"),
        (["visual_segments", 0, "placeholder_key"], "", "placeholder_key"),
    ],
)
def test_each_problem_gets_one_line(path: list, value: object, expect: str) -> None:
    with pytest.raises(InputError) as info:
        parse_template(edited(SEED, path, value))
    line = info.value.line()
    assert expect in line and "\n" not in line


def test_times_checked_against_video_duration() -> None:
    t = parse_template(SEED)
    t.check_against_video(10.0)
    with pytest.raises(InputError) as info:
        t.check_against_video(6.0)
    assert "outro" in info.value.field and "after the end of the video" in info.value.line()


def test_render_text_fills_only_names() -> None:
    assert render_text("Hi {client_name}, {x}!", {"client_name": "Zoë", "x": "ok"}) == "Hi Zoë, ok!"


def test_load_template_relative_video_and_missing(tmp_path) -> None:
    (tmp_path / "base.mp4").write_bytes(b"x")
    path = tmp_path / "t.json"
    path.write_text(json.dumps(SEED))
    t = load_template(str(path))
    assert t.base_video_path == str(tmp_path / "base.mp4")
    with pytest.raises(InputError, match="no template"):
        load_template(str(tmp_path / "missing.json"))
    with pytest.raises(InputError, match="no template with id"):
        load_template("never-created")

