"""The manifest stays current after every row at O(n) cost: one line appended per settled row,
written whole once at the start and once at the end."""

from __future__ import annotations

import csv
from pathlib import Path

from loom.campaign import ManifestWriter, plan_campaign, read_manifest_statuses
from loom.template import Template
from testkit.campaign_inputs import write_sheet

TEMPLATE = Template(
    id="manifest",
    base_video_path="base.mp4",
    visual_segments=[{"id": "plate", "segment_type": "text", "start_time": 0.1, "end_time": 0.5, "x": 0.1, "y": 0.1,
                      "width": 0.3, "height": 0.2, "placeholder_key": "company_name", "track": False}],
)


def _lines(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_each_settled_row_appends_one_line_and_the_end_compacts(tmp_path: Path, loom_home: Path) -> None:
    rows = [{"company_name": f"Company {i}"} for i in range(3000)] + [{"company_name": ""}]
    plan = plan_campaign(TEMPLATE, "v1", str(write_sheet(tmp_path / "sheet.csv", rows)), str(tmp_path / "out"))
    manifest = Path(plan.manifest_uri)
    writer = ManifestWriter(plan)
    first = manifest.read_bytes()
    assert len(_lines(manifest)) == 3001  # every row, the bad one already "invalid"
    for n, entry in enumerate(plan.to_make):
        plan.settle(entry.row.number, "done" if n % 2 else "failed", "" if n % 2 else "boom", 0.5)
        writer.row_settled(entry)
        if n == 10:
            grown = manifest.read_bytes()
            assert grown.startswith(first)  # appended, not rewritten
            assert len(_lines(manifest)) == 3001 + 11
    statuses = read_manifest_statuses(plan.manifest_uri)  # a row's last line is its state, mid-run too
    assert statuses[1] == ("failed", "boom") and statuses[2] == ("done", "") and statuses[3001][0] == "invalid"
    assert len(_lines(manifest)) == 3001 + 3000
    writer.close()
    compact = _lines(manifest)
    assert len(compact) == 3001 and [int(r["row"]) for r in compact] == list(range(1, 3002))
    assert read_manifest_statuses(plan.manifest_uri) == statuses
