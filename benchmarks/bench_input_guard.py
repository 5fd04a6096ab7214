"""What a hostile input costs the server before it is refused (issue 16), against a valid input of
the same kind read in the same run.

Each case runs in a fresh interpreter so its peak memory is its own: wall time of the refusal (or
of the read, for the baselines) and the peak RSS added over the interpreter with the modules
loaded. Inputs are made on the fly.

    .venv/bin/python benchmarks/bench_input_guard.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETUP = """
import resource, time, json, sys, os
sys.path.insert(0, {root!r})
from loom.errors import InputError
from loom.fetch import FetchError
{imports}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
outcome = "read"
try:
{body}
except (InputError, FetchError) as exc:
    outcome = "refused: " + str(exc)[:90]
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
total = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": seconds, "peak_mb": peak / 1024, "total_mb": total / 1024, "outcome": outcome}}))
"""


def run_case(body: str, folder: Path) -> dict[str, object]:
    """``body`` in a fresh interpreter that imports only the module it names (so the peak it adds
    over the imports is visible: the engine with torch loaded is ~450 MB on its own)."""
    module = next(m for m in ("loom.visual.logo", "loom.recipients", "loom.campaign", "loom.fetch") if m in body)
    imports = f"import {module}" + (", openpyxl" if "recipients" in module else "")
    code = SETUP.format(root=str(ROOT), imports=imports, body=textwrap.indent(textwrap.dedent(body).strip(), "    "))
    env = {**os.environ, "LOOM_HOME": str(folder / "home"), "LOOM_ALLOWED_ROOTS": str(folder)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_inputs(folder: Path, rows: int) -> dict[str, Path]:
    import io
    import struct
    import zipfile
    import zlib

    import openpyxl
    from PIL import Image

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    paths: dict[str, Path] = {}
    # A PNG whose header declares 6000x6600 (the 4.9 KB file), and a real 1 MP logo.
    raw = zlib.compress(b"\x00" * (6000 * 3 + 1) * 64, 9)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 6000, 6600, 8, 2, 0, 0, 0)) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    paths["png_bomb"] = folder / "bomb.png"
    paths["png_bomb"].write_bytes(bomb)
    paths["png_ok"] = folder / "logo.png"
    Image.effect_noise((1000, 1000), 60).convert("RGB").save(paths["png_ok"])
    # XLSX: shared strings that unpack to 200 MB; a sheet declaring a million rows; a valid one.
    book = openpyxl.Workbook()
    book.active.append(["client_name", "company_name"])
    for i in range(rows // 10):
        book.active.append([f"Ada {i}", f"Acme {i}"])
    buffer = io.BytesIO()
    book.save(buffer)
    paths["xlsx_ok"] = folder / "ok.xlsx"
    paths["xlsx_ok"].write_bytes(buffer.getvalue())
    paths["xlsx_strings"] = folder / "strings.xlsx"
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(paths["xlsx_strings"], "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item.filename))
        dst.writestr("xl/sharedStrings.xml", b"<sst><si><t>" + b"A" * (200 * 2**20) + b"</t></si></sst>")
    tall = openpyxl.Workbook()
    tall.active.append(["client_name"])
    tall.active.cell(row=1_000_000, column=1, value="far")
    paths["xlsx_tall"] = folder / "tall.xlsx"
    tall.save(paths["xlsx_tall"])
    # CSV: over the row budget, and a valid sheet of `rows` rows.
    paths["csv_over"] = folder / "over.csv"
    paths["csv_over"].write_text("client_name,company_name\n" + "Ada,Acme\n" * 100_001)
    paths["csv_ok"] = folder / "ok.csv"
    paths["csv_ok"].write_text("client_name,company_name\n" + "".join(f"Ada {i},Acme {i}\n" for i in range(rows)))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the valid sheet planned with its manifest")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loom-bench-guard-") as tmp:
        folder = Path(tmp)
        p = make_inputs(folder, args.rows)
        template = (
            "from loom.template import parse_template\n"
            "t = parse_template({'id': 'g', 'base_video_path': 'b.mp4', 'visual_segments': [{'id': 'p', 'segment_type': 'text', "
            "'start_time': 0, 'end_time': 1, 'x': 0.1, 'y': 0.1, 'width': 0.3, 'height': 0.1, 'placeholder_key': 'company_name'}]})\n"
        )
        cases = {
            "logo: PNG declaring 6000x6600 (refused)": f"loom.visual.logo.load_logo({str(p['png_bomb'])!r}, 'logo')",
            "logo: 1000x1000 PNG (baseline, read)": f"loom.visual.logo.load_logo({str(p['png_ok'])!r}, 'logo')",
            "sheet: XLSX, 200 MB of shared strings (refused)": f"loom.recipients.read_sheet({str(p['xlsx_strings'])!r})",
            "sheet: XLSX declaring 1,000,000 rows (refused)": f"loom.recipients.read_sheet({str(p['xlsx_tall'])!r})",
            f"sheet: XLSX, {args.rows // 10:,} rows (baseline, read)": f"loom.recipients.read_sheet({str(p['xlsx_ok'])!r})",
            "sheet: CSV over 100,000 rows (refused)": f"loom.recipients.read_sheet({str(p['csv_over'])!r})",
            f"campaign: {args.rows:,}-row CSV planned + manifest written": template
            + f"plan = loom.campaign.plan_campaign(t, 'v1', {str(p['csv_ok'])!r}, {str(folder / 'out')!r})\n"
            + "w = loom.campaign.ManifestWriter(plan)\n"
            + "[w.row_settled(e) for e in plan.to_make if plan.settle(e.row.number, 'done')]\n"
            + "w.close()",
        }
        print(f"{'case':<58} {'seconds':>8} {'+peak MB':>8} {'RSS MB':>7}  outcome")
        for name, body in cases.items():
            r = run_case(body, folder)
            print(f"{name:<58} {r['seconds']:>8.2f} {r['peak_mb']:>8.1f} {r['total_mb']:>7.0f}  {str(r['outcome'])[:60]}")
        # A logo server that drips a byte every 50 ms (the held the worker 300 s).
        drip = run_case(
            f"""
            import threading, time
            from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
            class Drip(BaseHTTPRequestHandler):
                def do_GET(self):
                    self.send_response(200); self.end_headers()
                    try:
                        for _ in range(100000):
                            self.wfile.write(b"x"); self.wfile.flush(); time.sleep(0.05)
                    except OSError:
                        pass
                def log_message(self, *a):
                    pass
            server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            host = f"127.0.0.1:{{server.server_address[1]}}"
            t0 = time.perf_counter()
            loom.fetch.fetch_bytes(f"http://{{host}}/logo.png", kind="logo", allowed_hosts={{host}})
            """,
            folder,
        )
        name = "logo: server dripping a byte every 50 ms (refused)"
        print(f"{name:<58} {drip['seconds']:>8.2f} {drip['peak_mb']:>8.1f} {drip['total_mb']:>7.0f}  {str(drip['outcome'])[:60]}")


if __name__ == "__main__":
    main()
