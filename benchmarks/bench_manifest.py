"""A campaign's manifest kept current after every row: appended per row (``ManifestWriter``)
against the whole file rewritten after every row (the way before), on the same plan.

    .venv/bin/python benchmarks/bench_manifest.py [--rows 20000]

Plans a sheet of N rows (checked in bulk, as a campaign does), then settles every row once with
each writer and prints the seconds and bytes written; the rewrite baseline runs on at most 2,000
rows (it is quadratic) and its per-row cost is printed beside the appender's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loom.campaign import ManifestWriter, plan_campaign, write_manifest  # noqa: E402
from loom.template import Template  # noqa: E402
from testkit.campaign_inputs import write_sheet  # noqa: E402

TEMPLATE = Template(
    id="bench-manifest",
    base_video_path="base.mp4",
    visual_segments=[{"id": "plate", "segment_type": "text", "start_time": 0.1, "end_time": 0.5, "x": 0.1, "y": 0.1,
                      "width": 0.3, "height": 0.2, "placeholder_key": "company_name", "track": False}],
)


def plan(work: Path, rows: int):  # noqa: ANN201
    sheet = write_sheet(work / f"sheet-{rows}.csv", [{"company_name": f"Company number {i}"} for i in range(rows)])
    started = time.perf_counter()
    result = plan_campaign(TEMPLATE, "v1", str(sheet), str(work / f"out-{rows}"))
    return result, time.perf_counter() - started


def settle_appending(p) -> tuple[float, int]:  # noqa: ANN001
    started = time.perf_counter()
    writer = ManifestWriter(p)
    for entry in p.to_make:
        entry.status = "done"
        writer.row_settled(entry)
    writer.close()
    return time.perf_counter() - started, os.path.getsize(p.manifest_uri)


def settle_rewriting(p) -> tuple[float, int]:  # noqa: ANN001
    started = time.perf_counter()
    written = 0
    write_manifest(p)
    for entry in p.to_make:
        entry.status = "done"
        write_manifest(p)
        written += os.path.getsize(p.manifest_uri)
    return time.perf_counter() - started, written


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-manifest-") as tmp:
        work = Path(tmp)
        os.environ["LOOM_HOME"] = str(work / "home")
        big, planned = plan(work, args.rows)
        print(f"plan {args.rows} rows (read, checked, keys, outputs looked up): {planned:.2f} s")
        seconds, size = settle_appending(big)
        print(f"appending writer, {args.rows} rows: {seconds:.2f} s ({1e6 * seconds / args.rows:.0f} us a row), "
              f"final manifest {size / 1e6:.1f} MB")
        n = min(args.rows, 2000)
        small, _ = plan(work, n)
        seconds_rw, written = settle_rewriting(small)
        small2, _ = plan(work, n)
        seconds_ap, _ = settle_appending(small2)
        print(f"{n} rows: rewriting after every row {seconds_rw:.2f} s ({written / 1e6:.0f} MB written), "
              f"appending {seconds_ap:.2f} s: {seconds_rw / seconds_ap:.0f}x")
        print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
