"""A large campaign bounded by the voice provider, not by the orchestrator.

    .venv/bin/python benchmarks/bench_scale.py [--rows 100,1000] [--db sqlite,postgres]
        [--modes one,scale-out,pair] [--latency 0.5] [--slots 3] [--concurrency 4] [--json F]

For each database, the ``loom up`` stack (``app.stack.LocalStack``: Prefect server on SQLite, or
on PostgreSQL with ``--postgres``, process pools, the deployments, one worker per pool, the
providers' global concurrency limits with ``LOOM_TTS_CONCURRENCY=slots``) and a fake ElevenLabs on
127.0.0.1 that takes ``latency`` seconds per line and answers 429 ``too_many_concurrent_requests``
beyond ``slots`` calls at once. A 3 s 160x120 recording with one voice line and one text overlay;
every row's line is new (no speech cache). N rows through the ``campaign`` deployment (REST, as a
user would start it):

- ``one``: one campaign run, rows in that run (``concurrency`` rendering at once);
- ``scale-out``: one campaign run whose rows go to child runs on the CPU pool in batches;
- ``pair``: two campaigns of N/2 rows each, started together, sharing the provider's slots.

Prints, per case: wall time from the run's creation to its end (worker pick-up included), the
provider floor (N x latency / slots: the least time the provider allows), wall / floor, the
orchestration overhead per row ((wall - floor) / N), the most calls the provider saw at once and
its 429s. The issue's check: 600 rows, slots 3, 0.5 s a line: wall <= 1.6 x floor + 60 s, the
provider never above 3, no 429.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.stack import LocalStack, free_port  # noqa: E402
from testkit.campaign_inputs import API_KEY, VOICE_ID, write_sheet, write_template  # noqa: E402
from testkit.fake_elevenlabs import FakeElevenLabs  # noqa: E402

FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def _rows(tag: str, n: int) -> list[dict[str, str]]:
    # A name no other case speaks: every line is a request to the provider.
    return [{"client_name": f"{tag} {i:05d}", "company_name": f"Co {i:05d}"} for i in range(n)]


def _create(client: httpx.Client, deployment: str, parameters: dict) -> str:
    for attempt in range(8):
        resp = client.post(f"/deployments/{deployment}/create_flow_run", json={"parameters": parameters})
        if resp.status_code != 503:
            break
        time.sleep(1 + attempt)  # SQLite "database is locked": retried as Prefect's client does
    resp.raise_for_status()
    return str(resp.json()["id"])


def _wait(client: httpx.Client, run_ids: list[str], timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    done: dict[str, dict] = {}
    while len(done) < len(run_ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs not finished after {timeout:.0f} s")
        for run_id in run_ids:
            if run_id in done:
                continue
            try:
                run = client.get(f"/flow_runs/{run_id}").json()
            except httpx.HTTPError:
                continue
            if (run.get("state") or {}).get("type") in FINAL:
                done[run_id] = run
        time.sleep(0.5)
    return [done[r] for r in run_ids]


def _task_runs(client: httpx.Client, run_ids: list[str]) -> list[dict]:
    found, offset = [], 0
    while True:
        page = client.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": run_ids}}, "limit": 200, "offset": offset}).json()
        found += page
        if len(page) < 200:
            return found
        offset += 200


def _stages(client: httpx.Client, run_ids: list[str], started_at: str) -> dict[str, float]:
    """Where the time went: mean seconds of a row's speech (``speak-row``: slot wait, call, fit)
    and of its video (``make-recipient``), and when the first row's speech started after creation."""
    from datetime import datetime

    def when(stamp: str) -> float:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()

    time.sleep(3)  # task runs reach the server as events, a moment after the run ends
    runs = [t for t in _task_runs(client, run_ids) if t.get("start_time") and t.get("end_time")]
    out: dict[str, float] = {}
    for prefix, name in (("speak-row", "speech_s"), ("row-", "video_s")):
        spans = [when(t["end_time"]) - when(t["start_time"]) for t in runs if t["name"].startswith(prefix)]
        if spans:
            out[name] = round(sum(spans) / len(spans), 3)
    first = [when(t["start_time"]) for t in runs if t["name"].startswith("speak-row")]
    if first:
        out["first_speech_after_s"] = round(min(first) - when(started_at), 1)
    return out


def run_case(stack: LocalStack, fake: FakeElevenLabs, template: Path, work: Path, rows: int, mode: str, args: argparse.Namespace) -> dict:
    tag = f"{mode[:3]}{rows}{stack.db_name[:2]}{args.workers[0]}"
    campaigns = 2 if mode == "pair" else 1
    params = []
    for c in range(campaigns):
        sheet = write_sheet(work / f"{tag}-{c}.csv", _rows(f"{tag}c{c}", rows // campaigns))
        p = {"template": str(template), "sheet": str(sheet), "output_dir": str(work / f"{tag}-out{c}"),
             "concurrency": args.concurrency, "workers": args.workers}
        if mode == "scale-out":
            p["scale_out"] = True
        params.append(p)
    fake.limit_concurrency(args.slots, latency_s=args.latency)
    requests_before = len(fake.requests_to("/text-to-speech/"))
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        dep = str(client.get("/deployments/name/campaign/campaign").json()["id"])
        started = time.perf_counter()
        ids = [_create(client, dep, p) for p in params]
        runs = _wait(client, ids, timeout=args.timeout)
        wall = time.perf_counter() - started
        stages = _stages(client, ids, runs[0]["created"])
    videos = sum(len(list((work / f"{tag}-out{c}").glob("*.mp4"))) for c in range(campaigns))
    errors = sorted({
        r["error"] for c in range(campaigns) if (work / f"{tag}-out{c}" / "manifest.csv").is_file()
        for r in csv.DictReader((work / f"{tag}-out{c}" / "manifest.csv").open()) if r["status"] != "done"
    })  # fmt: skip
    floor = rows * args.latency / args.slots
    return {
        "db": stack.db_name,
        "rows": rows,
        "mode": mode,
        "workers": args.workers,
        "states": [r["state"]["type"] for r in runs],
        "videos": videos,
        "wall_s": round(wall, 1),
        "floor_s": round(floor, 1),
        "wall_over_floor": round(wall / floor, 2),
        "overhead_ms_per_row": round(1000 * (wall - floor) / rows, 1),
        "speech_requests": len(fake.requests_to("/text-to-speech/")) - requests_before,
        "peak_concurrency": fake.peak_concurrency,
        "refused_429": fake.concurrency_refusals,
        # the bar counts only when every run completed with every video made
        "check_1_6_floor_plus_60": wall <= 1.6 * floor + 60 and videos == rows and all(r["state"]["type"] == "COMPLETED" for r in runs),
        "errors": errors[:3],
        **stages,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="100,1000", help="comma-separated row counts")
    parser.add_argument("--db", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--modes", default="one,scale-out,pair", help="comma-separated: one, scale-out, pair")
    parser.add_argument("--latency", type=float, default=0.5, help="provider seconds per line")
    parser.add_argument("--slots", type=int, default=3, help="provider's concurrent calls (LOOM_TTS_CONCURRENCY)")
    parser.add_argument("--concurrency", type=int, default=4, help="the campaign's rendering concurrency")
    parser.add_argument("--workers", choices=["threads", "processes"], default="threads", help="where rows render")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    results = []
    root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    os.chmod(root, 0o755)  # PostgreSQL runs as the postgres user under root: it must reach its folder
    try:
        with FakeElevenLabs(api_key=API_KEY, voices=(VOICE_ID,)) as fake:
            template = write_template(root / "tpl", seconds=3.0, size=(160, 120))
            for db in args.db.split(","):
                env = {
                    "PREFECT_HOME": str(root / db / "prefect-home"),
                    "LOOM_HOME": str(root / db / "loom-home"),
                    "LOOM_ALLOWED_ROOTS": str(root),  # the benchmark's sheets are the operator's (loom.input_policy)
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PREFECT_WORKER_QUERY_SECONDS": "2",
                    "LOOM_TTS_CONCURRENCY": str(args.slots),
                    "ELEVENLABS_API_KEY": API_KEY,
                    "ELEVENLABS_BASE_URL": fake.base_url,
                }
                stack = LocalStack(port=free_port(), env=env, log_dir=root / db / "logs",
                                   postgres=db == "postgres", postgres_dir=root / db / "pg")  # fmt: skip
                stack.db_name = db  # type: ignore[attr-defined]
                t = time.perf_counter()
                with stack:
                    print(f"# {db}: stack up in {time.perf_counter() - t:.1f} s", flush=True)
                    for rows in (int(r) for r in args.rows.split(",")):
                        for mode in args.modes.split(","):
                            result = run_case(stack, fake, template, root / db, rows, mode, args)
                            results.append(result)
                            print(json.dumps(result), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print("| db | rows | mode | wall | provider floor | wall / floor | overhead / row | peak calls | 429s | videos | <= 1.6 floor + 60 s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['db']} | {r['rows']} | {r['mode']} | {r['wall_s']} s | {r['floor_s']} s | {r['wall_over_floor']} | "
              f"{r['overhead_ms_per_row']} ms | {r['peak_concurrency']} | {r['refused_429']} | {r['videos']} | "
              f"{'yes' if r['check_1_6_floor_plus_60'] else 'no'} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
