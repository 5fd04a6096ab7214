"""A campaign against the sum of its recipients made one at a time, and an unchanged re-run.

    .venv/bin/python benchmarks/bench_campaign.py [--rows 20] [--concurrency 2] [--size 320x240]

Runs against a real Prefect server (``prefect_test_harness``: SQLite, a temporary database) with
speech from a fake ElevenLabs on 127.0.0.1 (so requests can be counted). Steps:

1. warm-up: one recipient, so the template is prepared (once per template version, cached) and
   the imports are paid; not counted.
2. singles: ``personalize_recipient`` for each of N rows, one flow run after another; their sum.
3. campaign: the ``campaign`` flow over N other rows of the same shape (names of the same length,
   so the same work, but nothing cached from step 2) with bounded concurrency.
4. re-run: the same campaign again, unchanged: every row is skipped; speech requests counted.

Prints wall-clock seconds, campaign/sum (target <= 0.6 on 2 cores), re-run/campaign (target
<= 0.10) and the speech requests the re-run made (target 0).
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


def _rows(prefix: str, n: int) -> list[dict[str, str]]:
    # Same length for every prefix, so each set of rows costs the same to make.
    return [{"client_name": f"{prefix}{i:03d}", "company_name": f"Company {prefix}{i:03d}"} for i in range(n)]


def _cli_single(template: str, row: dict[str, str], folder: Path) -> float:
    """One recipient made alone, as a user would: a `loom personalize` process, start-up included."""
    import json
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "row.json"
    data.write_text(json.dumps(row))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "app.cli", "personalize", "--template", template, "--data", str(data),
         "--out", str(folder / "out.mp4")],
        check=True, capture_output=True, env=env, cwd=ROOT,
    )
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--workers", choices=["processes", "threads"], default="processes")
    parser.add_argument("--size", default="320x240", help="recording size WxH (3 s, 25 fps)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    work = Path(tempfile.mkdtemp(prefix="bench-campaign-"))
    os.environ.update(
        {
            "LOOM_HOME": str(work / "home"),
            "PREFECT_HOME": str(work / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "ELEVENLABS_API_KEY": "bench-key",
            "ELEVENLABS_MAX_ATTEMPTS": "2",
        }
    )
    from testkit.fake_elevenlabs import FakeElevenLabs

    with FakeElevenLabs(api_key="bench-key", voices=("presenter-voice",)) as fake:
        os.environ["ELEVENLABS_BASE_URL"] = fake.base_url
        from prefect.testing.utilities import prefect_test_harness

        from testkit.campaign_inputs import speech_requests, write_sheet, write_template

        template = str(write_template(work / "template", size=(width, height)))
        with prefect_test_harness(server_startup_timeout=120):
            from flows.campaign import campaign
            from flows.recipient import personalize_recipient

            started = time.perf_counter()
            personalize_recipient(template, _rows("Warm", 1)[0], str(work / "warm.mp4"))
            print(f"warm-up (prepare + first recipient): {time.perf_counter() - started:.1f} s")

            singles = []
            for i, row in enumerate(_rows("Solo", args.rows)):
                t = time.perf_counter()
                personalize_recipient(template, row, str(work / "singles" / f"{i}.mp4"))
                singles.append(time.perf_counter() - t)
            total = sum(singles)
            print(f"singles: {args.rows} recipients one at a time: sum {total:.1f} s (mean {total / args.rows:.2f} s)")
            cli_total = sum(_cli_single(template, row, work / "cli" / f"{i}") for i, row in enumerate(_rows("Clis", args.rows)))
            print(
                f"singles as users run them (`loom personalize`, one process each): sum {cli_total:.1f} s "
                f"(mean {cli_total / args.rows:.2f} s)"
            )

            sheet = str(write_sheet(work / "sheet.csv", _rows("Camp", args.rows)))
            out = str(work / "campaign")
            t = time.perf_counter()
            result = campaign(template, sheet, out, concurrency=args.concurrency, workers=args.workers)
            first = time.perf_counter() - t
            assert result.counts == {"done": args.rows}, result.counts
            print(f"campaign: {args.rows} rows at concurrency {args.concurrency}: {first:.1f} s")

            before = speech_requests(fake)
            t = time.perf_counter()
            again = campaign(template, sheet, out, concurrency=args.concurrency, workers=args.workers)
            rerun = time.perf_counter() - t
            assert again.counts == {"skipped": args.rows}, again.counts
            requests = speech_requests(fake) - before
            t = time.perf_counter()
            campaign(template, sheet, out, concurrency=args.concurrency, workers=args.workers)
            print(f"re-run: {rerun:.2f} s; once more: {time.perf_counter() - t:.2f} s")

    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    print(f"campaign / sum of in-process flow singles: {first / total:.2f} (target <= 0.60)")
    print(f"campaign / sum of `loom personalize` singles: {first / cli_total:.2f} (target <= 0.60)")
    print(f"unchanged re-run: {rerun:.2f} s = {rerun / first:.3f} of the first (target <= 0.10), speech requests: {requests} (target 0)")


if __name__ == "__main__":
    main()
