"""Bad templates and paths (docs/bad-input.md, rows 5-7 and the output-location rule)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app as cli
from loom import pipeline
from loom.errors import InputError
from loom.template import check_safe_id, parse_template, template_uri
from testkit.media import make_clip
from tests.template_edits import edited

BASE = {
    "id": "tpl-bad",
    "base_video_path": "base.mp4",
    "voice_segments": [
        {"id": "hi", "start_time": 0.2, "end_time": 1.0, "template_text": "Hi {client_name}!"},
        {"id": "bye", "start_time": 1.2, "end_time": 1.8, "template_text": "Bye."},
    ],
    "visual_segments": [
        {"id": "plate", "segment_type": "text", "start_time": 0.2, "end_time": 1.0, "x": 0.1, "y": 0.1,
         "width": 0.4, "height": 0.2, "placeholder_key": "company_name", "track": False},
    ],
}


@pytest.mark.parametrize(
    "bad", ["../../x", "../x", "/etc/passwd", "a/b", "..", ".hidden", "x\x00y", "a" * 200, "a..b", "a b", "", "/abs"]
)
def test_path_like_template_ids_are_refused(bad: str) -> None:
    with pytest.raises(InputError) as err:
        parse_template(edited(BASE, ("id",), bad))
    assert err.value.field == "id"
    with pytest.raises(InputError) as err:
        template_uri(bad)
    assert err.value.field == "template_id"


def test_safe_ids_pass() -> None:
    assert check_safe_id("abc-1.2_x") == "abc-1.2_x"
    assert parse_template(edited(BASE, ("id",), "Acme.demo_2-b")).id == "Acme.demo_2-b"


@pytest.mark.parametrize("where", [("voice_segments", 0, "id"), ("visual_segments", 0, "id")])
def test_path_like_segment_ids_are_refused(where: tuple) -> None:
    """Segment ids name files under the prepared template: they must not climb out of it."""
    with pytest.raises(InputError) as err:
        parse_template(edited(BASE, where, "../../escape"))
    assert err.value.field.endswith(".id")


def test_cli_with_a_climbing_template_id_is_one_line_exit_2(loom_home: Path) -> None:
    result = CliRunner().invoke(cli, ["personalize", "--template", "../../x", "--data", "{}"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output


def test_segment_times_outside_the_video_are_named_before_any_work(tmp_path: Path, loom_home: Path) -> None:
    make_clip(tmp_path / "base.mp4", seconds=2.0, size=(160, 120))
    data = edited(BASE, ("voice_segments", 1, "end_time"), 3.5)
    data["base_video_path"] = str(tmp_path / "base.mp4")
    with pytest.raises(InputError) as err:
        pipeline.prepare_template(parse_template(data))
    assert err.value.field == "voice_segments[bye].end_time"
    assert "after the end of the video" in err.value.problem and "at most 2.0" in err.value.line()
    assert not (loom_home / "prepared").exists() or not any((loom_home / "prepared").rglob("*.*"))


def test_overlapping_voice_segments_are_named() -> None:
    with pytest.raises(InputError) as err:
        parse_template(edited(BASE, ("voice_segments", 1, "start_time"), 0.8))
    assert "'hi'" in err.value.problem and "'bye'" in err.value.problem and "overlap" in err.value.problem


@pytest.mark.parametrize(
    "path,value,field",
    [
        (("voice_segments", 0, "end_time"), 0.1, "voice_segments"),  # ends before it starts
        (("visual_segments", 0, "x"), 0.9, "visual_segments"),  # box leaves the frame
        (("voice_segments", 0, "template_text"), "Hi {client_name", "template_text"),  # unclosed brace
    ],
)
def test_other_impossible_templates_are_named(path: tuple, value: object, field: str) -> None:
    with pytest.raises(InputError) as err:
        data = parse_template(edited(BASE, path, value))
        data.placeholders()
        from loom.recipients import check_row

        check_row(data, {"client_name": "Ada", "company_name": "Acme"})
    assert field in err.value.line()


def test_format_string_tricks_are_refused_in_the_template() -> None:
    """``{client_name.__class__}`` is refused up front: placeholders are plain names, never evaluated."""
    with pytest.raises(InputError, match="not a placeholder name"):
        parse_template(edited(BASE, ("voice_segments", 0, "template_text"), "Hi {client_name.__class__}!"))


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_nothing_is_written_outside_the_output_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole recipient whose values look like paths: every file made lands under LOOM_HOME."""
    from loom.settings import reload_settings

    inputs, home, work = tmp_path / "inputs", tmp_path / "home", tmp_path / "cwd"
    inputs.mkdir()
    work.mkdir()
    make_clip(inputs / "base.mp4", seconds=2.0, size=(160, 120))
    data = copy.deepcopy(BASE)
    data["voice_segments"] = []
    (inputs / "t.json").write_text(json.dumps(data))
    monkeypatch.setenv("LOOM_HOME", str(home))
    monkeypatch.chdir(work)
    reload_settings()
    before = _files(tmp_path)
    try:
        result = pipeline.personalize(
            str(inputs / "t.json"),
            {"company_name": "../../../../escaped", "output": "../../evil.mp4", "client_name": "../x"},
        )
    finally:
        monkeypatch.undo()
        reload_settings()
    made = _files(tmp_path) - before
    assert made and Path(result.output_uri) in made
    outside = [p for p in made if not p.resolve().is_relative_to(home.resolve())]
    assert outside == []
    assert Path(result.output_uri).resolve().is_relative_to((home / "outputs").resolve())
    assert not any(p.name.startswith("evil") or "escaped" in str(p) for p in made)
    assert os.listdir(work) == []


def test_non_finite_numbers_are_refused() -> None:
    text = json.dumps(
        {"id": "x", "base_video_path": "b.mp4",
         "voice_segments": [{"id": "hi", "start_time": 0.2, "end_time": 1.5, "template_text": "Hi {client_name}"}]}
    )
    for bad in ("Infinity", "NaN", "-Infinity"):
        with pytest.raises(InputError) as err:
            parse_template(text.replace("1.5", bad))
        assert err.value.line() == "voice_segments.0.end_time: Input should be a finite number"
    with pytest.raises(InputError, match="not a safe id"):
        parse_template(text.replace('"id": "x"', '"id": "nl\\n"'))
