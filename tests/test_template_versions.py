"""A template edit that changes a recipient's video makes a new version and remakes the rows;
an edit that changes nothing a video depends on does not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from loom.campaign import plan_campaign, run_campaign_locally
from loom.pipeline import prepare_template, template_version
from loom.template import Template, load_template, parse_template
from testkit.media import make_clip
from testkit.campaign_inputs import write_sheet
from tests.template_edits import edited

TEMPLATE = {
    "id": "versions",
    "name": "Versions",
    "base_video_path": "base.mp4",
    "voice_id": "v1",
    "voice_segments": [
        {"id": "hi", "start_time": 0.2, "end_time": 1.0, "template_text": "Hi {client_name}!"},
    ],
    "visual_segments": [
        {"id": "plate", "segment_type": "text", "start_time": 0.4, "end_time": 1.4, "x": 0.1, "y": 0.1,
         "width": 0.5, "height": 0.25, "placeholder_key": "company_name", "track": False},
    ],
}


def _template(folder: Path, data: dict) -> Template:
    path = folder / "template.json"
    path.write_text(json.dumps(data))
    return load_template(str(path))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    make_clip(tmp_path / "base.mp4", seconds=2.0, size=(160, 120), fps=25)
    return tmp_path


@pytest.mark.parametrize(
    "path,value",
    [
        (("visual_segments", 0, "x"), 0.2),  # the box
        (("visual_segments", 0, "height"), 0.3),
        (("visual_segments", 0, "start_time"), 0.5),  # a time
        (("voice_segments", 0, "end_time"), 1.1),
        (("voice_segments", 0, "template_text"), "Hello {client_name}!"),  # the text
        (("voice_segments", 0, "lipsync"), False),
        (("visual_segments", 0, "style"), {"color": "#ff0000"}),
        (("visual_segments", 0, "track"), True),
        (("voice_id",), "v2"),  # the voice speaking the line
    ],
)
def test_every_edit_a_video_depends_on_makes_a_new_version(folder: Path, loom_home: Path, path: tuple, value: object) -> None:
    before = template_version(_template(folder, TEMPLATE))
    assert template_version(_template(folder, edited(TEMPLATE, path, value))) != before


def test_edits_no_video_depends_on_keep_the_version(folder: Path, loom_home: Path) -> None:
    before = template_version(_template(folder, TEMPLATE))
    assert template_version(_template(folder, edited(TEMPLATE, ("name",), "Renamed"))) == before
    # key order, spelled-out defaults and a moved copy of the same recording change nothing
    reordered = json.loads(json.dumps(TEMPLATE, sort_keys=True))
    reordered["visual_segments"][0]["image_fit"] = "contain"
    assert template_version(_template(folder, reordered)) == before
    (folder / "moved").mkdir()
    shutil.copy(folder / "base.mp4", folder / "moved" / "take.mp4")
    assert template_version(_template(folder, edited(TEMPLATE, ("base_video_path",), "moved/take.mp4"))) == before


def test_the_base_videos_bytes_are_part_of_the_version(folder: Path, loom_home: Path) -> None:
    template = _template(folder, TEMPLATE)
    before = template_version(template)
    make_clip(folder / "base.mp4", seconds=2.0, size=(160, 120), fps=25, seed=5)
    assert template_version(parse_template(template.model_dump())) != before


def _run(template: Template, sheet: Path, out: Path) -> dict[str, str]:
    plan = run_campaign_locally(plan_campaign(template, template_version(template), str(sheet), str(out)))
    return {e.row.values["client_name"]: e.status for e in plan.entries} | {
        f"{e.row.values['client_name']}:uri": e.output_uri for e in plan.entries
    }


def test_a_rerun_after_an_edit_remakes_its_rows_and_after_a_rename_makes_nothing(folder: Path, loom_home: Path) -> None:
    sheet = write_sheet(folder / "sheet.csv", [
        {"client_name": "Ada", "company_name": "Globex"},
        {"client_name": "Bo", "company_name": "Initech"},
    ])
    out = folder / "out"
    first = _run(_template(folder, TEMPLATE), sheet, out)
    assert (first["Ada"], first["Bo"]) == ("done", "done")

    renamed = _run(_template(folder, edited(TEMPLATE, ("name",), "Versions, renamed")), sheet, out)
    assert (renamed["Ada"], renamed["Bo"]) == ("skipped", "skipped")
    assert renamed["Ada:uri"] == first["Ada:uri"]

    moved = edited(TEMPLATE, ("visual_segments", 0, "x"), 0.3)
    remade = _run(_template(folder, moved), sheet, out)
    assert (remade["Ada"], remade["Bo"]) == ("done", "done")  # nothing reused from the old box
    assert remade["Ada:uri"] != first["Ada:uri"] and Path(remade["Ada:uri"]).is_file()
    versions = sorted(p.name for p in (loom_home / "prepared" / "versions").iterdir())
    assert len(versions) == 2  # the edit was prepared again, not served from the old version

    again = _run(_template(folder, moved), sheet, out)
    assert (again["Ada"], again["Bo"]) == ("skipped", "skipped")


def test_a_rename_reuses_the_prepared_template_under_its_new_name(folder: Path, loom_home: Path) -> None:
    prepared = prepare_template(_template(folder, TEMPLATE))
    renamed = prepare_template(_template(folder, edited(TEMPLATE, ("name",), "New name")))
    assert renamed.version == prepared.version and renamed.root == prepared.root
    assert renamed.template.name == "New name"
