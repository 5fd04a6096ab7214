"""One input policy and one safe fetcher (issue 16): what a client may make the server read.

The policy is checked where a value is planned and again where the file is read; the fetcher
checks every hop of an http(s) read. Local servers here stand in for internal services: a test
asserts that they received no request, not only that the read failed.
"""

from __future__ import annotations

import io
import os
import time
import tracemalloc
import zlib
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from loom.errors import InputError
from loom.fetch import FetchError, FetchLimits, TooLarge, fetch_bytes
from loom.input_policy import InputPolicy
from loom.settings import reload_settings
from testkit.http import serving


@pytest.fixture
def server_home(loom_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A server's policy: only $LOOM_HOME (the test folder is not an allowed root here)."""
    monkeypatch.delenv("LOOM_ALLOWED_ROOTS")
    loom_home.mkdir(parents=True, exist_ok=True)
    reload_settings()
    return loom_home


class Recorder(BaseHTTPRequestHandler):
    """Answers 200 with a body; counts the requests it got (an internal service that must stay unasked)."""

    hits: list[str] = []
    body = b"secret internal answer"

    def do_GET(self) -> None:  # noqa: N802
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def _recorder() -> type[Recorder]:
    return type("Internal", (Recorder,), {"hits": []})


def _redirect_to(target: str) -> type[BaseHTTPRequestHandler]:
    """A public-looking server that answers every request with a redirect to ``target``."""

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Redirect


# ---------------------------------------------------------------- the policy


def test_local_files_outside_the_roots_are_refused_without_saying_whether_they_exist(server_home: Path, tmp_path: Path) -> None:
    policy = InputPolicy.from_settings()
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "key.png").write_bytes(b"\x89PNG")
    lines = set()
    for value in ("/etc/passwd", "/etc/no-such-file", str(tmp_path / "private" / "key.png"), "../private/key.png", "file:///etc/hosts"):
        with pytest.raises(InputError) as err:
            policy.check("logo", value)
        lines.add(err.value.line())
    assert len(lines) == 1  # one line for every refused file: no existence oracle
    assert lines.pop().startswith("logo: is not in a folder this server reads for clients")
    (server_home / "logo.png").write_bytes(b"\x89PNG")
    assert policy.check("logo", "logo.png") == os.path.realpath(server_home / "logo.png")


def test_a_symlink_inside_home_cannot_lead_out(server_home: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.png").write_bytes(b"\x89PNG")
    (server_home / "link.png").symlink_to(tmp_path / "outside.png")
    with pytest.raises(InputError, match="not in a folder"):
        InputPolicy.from_settings().check("logo", str(server_home / "link.png"))


def test_buckets_other_than_the_home_bucket_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_HOME", "gs://home-bucket/loom")
    monkeypatch.delenv("LOOM_ALLOWED_BUCKETS", raising=False)
    reload_settings()
    try:
        policy = InputPolicy.from_settings()
        assert policy.check("sheet", "gs://home-bucket/uploads/s.csv") == "gs://home-bucket/uploads/s.csv"
        lines = set()
        for value in ("gs://other-bucket/exists.png", "gs://other-bucket/missing.png", "gcs://Other-Bucket/x"):
            with pytest.raises(InputError) as err:
                policy.check("logo", value)
            lines.add(err.value.line())
        assert lines == {"logo: names a bucket this server does not read for clients (use the home bucket, or list the bucket in LOOM_ALLOWED_BUCKETS)"}
        monkeypatch.setenv("LOOM_ALLOWED_BUCKETS", "brand-assets, gs://home-bucket")
        reload_settings()
        assert InputPolicy.from_settings().check("logo", "gs://brand-assets/a.png") == "gs://brand-assets/a.png"
    finally:
        monkeypatch.undo()
        reload_settings()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/logo.png",
        "http://169.254.169.254/latest/meta-data",
        "http://metadata.google.internal/x",
        "http://localhost/x",
        "http://[::1]/x",
        "http://[::ffff:10.0.0.1]/x",
        "http://[2002:a00:1::]/x",  # 6to4 wrapping 10.0.0.1
        "http://[64:ff9b::7f00:1]/x",  # NAT64 wrapping 127.0.0.1
        "https://user:pw@example.com/x.png",
        "ftp://example.com/x.png",
        "data:image/png;base64,AAAA",
    ],
)
def test_urls_into_the_network_are_refused_at_plan_time(server_home: Path, url: str) -> None:
    with pytest.raises(InputError) as err:
        InputPolicy.from_settings().check("logo", url)
    assert err.value.field == "logo"


def test_the_input_allow_list_is_not_the_webhook_one(server_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")
    reload_settings()
    with pytest.raises(InputError):
        InputPolicy.from_settings().check("logo", "http://127.0.0.1:9/logo.png")
    monkeypatch.setenv("LOOM_INPUT_ALLOWED_HOSTS", "127.0.0.1:9")
    reload_settings()
    assert InputPolicy.from_settings().check("logo", "http://127.0.0.1:9/logo.png")


# ---------------------------------------------------------------- the fetcher


def test_a_redirect_into_the_network_is_refused_and_never_followed() -> None:
    internal = _recorder()
    with serving(internal) as inside:
        with serving(_redirect_to(f"http://127.0.0.1:{inside.server_address[1]}/secret.png")) as outside:
            front = f"127.0.0.1:{outside.server_address[1]}"
            with pytest.raises(FetchError) as err:
                fetch_bytes(f"http://{front}/logo.png", kind="logo", allowed_hosts={front})
    assert "loopback" in err.value.problem
    assert internal.hits == []  # the internal service was never asked


def test_a_name_that_resolves_inside_is_refused_before_any_connection() -> None:
    internal = _recorder()
    with serving(internal) as inside:
        port = inside.server_address[1]

        def rebinding(host: str, _port: int) -> list[str]:  # public first, then the inside address
            return ["93.184.216.34", "127.0.0.1"] if host == "cdn.example.com" else []

        with pytest.raises(FetchError) as err:
            fetch_bytes(f"http://cdn.example.com:{port}/logo.png", kind="logo", allowed_hosts=set(), resolver=rebinding)
    assert "cdn.example.com (127.0.0.1) is a loopback address" in err.value.problem
    assert internal.hits == []


def test_an_allowed_internal_host_is_fetched() -> None:
    seen: list[str] = []

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    with serving(Echo) as server:
        port = server.server_address[1]
        body = fetch_bytes(f"http://127.0.0.1:{port}/a.png", kind="logo", allowed_hosts={f"127.0.0.1:{port}"})
    assert body == b"ok" and seen == [f"127.0.0.1:{port}"]


class Endless(BaseHTTPRequestHandler):
    """A body with no Content-Length that never ends (or drips slowly)."""

    delay = 0.0

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.end_headers()
        try:
            for _ in range(100_000):
                self.wfile.write(b"x" * (1 if self.delay else 65536))
                self.wfile.flush()
                if self.delay:
                    time.sleep(self.delay)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


def test_the_byte_cap_holds_while_streaming() -> None:
    with serving(Endless) as server:
        host = f"127.0.0.1:{server.server_address[1]}"
        tracemalloc.start()
        with pytest.raises(TooLarge):
            fetch_bytes(f"http://{host}/big", kind="logo", allowed_hosts={host}, limits=FetchLimits(max_bytes=2 * 2**20, total_s=30))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 16 * 2**20  # the cap, not the body, bounds memory


def test_a_slow_drip_is_cut_off() -> None:
    drip = type("Drip", (Endless,), {"delay": 0.05})
    with serving(drip) as server:
        host = f"127.0.0.1:{server.server_address[1]}"
        with pytest.raises(FetchError) as err:  # the total time, for a fetch allowed to be slow
            fetch_bytes(f"http://{host}/slow", kind="logo", allowed_hosts={host}, limits=FetchLimits(max_bytes=2**20, total_s=0.5, min_rate=0))
        assert "took over 0.5 s" in err.value.problem
        with pytest.raises(FetchError) as err:  # the logo's own limits: too slow well before the total
            fetch_bytes(f"http://{host}/slow", kind="logo", allowed_hosts={host})
        assert "too slowly" in err.value.problem


def test_an_unreachable_allowed_logo_is_named(server_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from loom.visual.logo import load_logo

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("LOOM_INPUT_ALLOWED_HOSTS", f"127.0.0.1:{port}")
    reload_settings()
    with pytest.raises(InputError) as err:
        load_logo(f"http://127.0.0.1:{port}/logo.png", "logo", InputPolicy.from_settings())
    assert err.value.field == "logo" and "could not be reached" in err.value.problem


# ---------------------------------------------------------------- budgets


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG declaring ``width`` x ``height`` whose pixel data compresses to a few KB."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = zlib.compress(b"\x00" * (width * 3 + 1) * 64, 9)  # the first rows only: PIL refuses at the header anyway
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_a_png_declaring_6000x6600_is_refused_from_its_header(tmp_path: Path) -> None:
    from loom.visual.logo import load_logo

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(6000, 6600))
    assert bomb.stat().st_size < 10_000
    tracemalloc.start()
    with pytest.raises(InputError) as err:
        load_logo(str(bomb), "logo")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "6000x6600 pixels" in err.value.problem and "16 megapixels" in err.value.line()
    assert peak < 50 * 2**20


def test_a_large_allowed_logo_is_reduced_as_it_is_read(tmp_path: Path) -> None:
    from PIL import Image

    from loom.visual.logo import MAX_LOGO_SIDE, load_logo

    Image.new("RGB", (3000, 1500), (10, 200, 30)).save(tmp_path / "wide.png")
    rgba = load_logo(str(tmp_path / "wide.png"), "logo")
    assert rgba.shape == (MAX_LOGO_SIDE // 2, MAX_LOGO_SIDE, 4)


def _xlsx_bytes(rows: list[list[object]]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_an_xlsx_whose_text_unpacks_huge_is_refused_from_the_zip_directory(tmp_path: Path) -> None:
    import zipfile

    from loom.recipients import read_sheet

    small = _xlsx_bytes([["client_name"], ["Ada"]])
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(io.BytesIO(small)) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item.filename))
        text = b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>'
        dst.writestr("xl/sharedStrings.xml", text + b"A" * (40 * 2**20) + b"</t></si></sst>")
    assert bomb.stat().st_size < 200_000
    with pytest.raises(InputError) as err:
        read_sheet(str(bomb))
    assert err.value.field == "sheet" and "MB of text once unpacked" in err.value.problem


def test_an_xlsx_spanning_a_million_rows_stops_at_the_row_budget(tmp_path: Path) -> None:
    import openpyxl

    from loom.recipients import MAX_SHEET_ROWS, read_sheet

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["client_name"])
    sheet.cell(row=3 * MAX_SHEET_ROWS, column=1, value="far away")
    book.save(tmp_path / "tall.xlsx")
    with pytest.raises(InputError) as err:
        read_sheet(str(tmp_path / "tall.xlsx"))
    assert "rows" in err.value.problem and err.value.field == "sheet"


def test_a_csv_over_the_row_budget_is_refused(tmp_path: Path) -> None:
    from loom.recipients import MAX_SHEET_ROWS, read_sheet

    sheet = tmp_path / "big.csv"
    sheet.write_text("client_name\n" + "Ada\n" * (MAX_SHEET_ROWS + 1))
    with pytest.raises(InputError, match="more than 100,000 rows"):
        read_sheet(str(sheet))


# ---------------------------------------------------------------- sheets read by position


def test_a_stray_comma_fails_its_row_and_shifts_nothing(tmp_path: Path) -> None:
    from loom.recipients import check_rows, read_sheet
    from tests.test_bad_input_rows import TEMPLATE

    sheet = tmp_path / "s.csv"
    sheet.write_text("client_name,company_name\nAda,Acme,\nGrace,Hooper, Inc\nLinus,Umbrella\n")
    rows = check_rows(TEMPLATE, "v1", read_sheet(str(sheet)).rows)
    assert rows[0].ok and rows[0].values == {"client_name": "Ada", "company_name": "Acme"}  # a trailing empty cell is harmless
    assert not rows[1].ok and rows[1].error.startswith("row 2: has 3 values for 2 columns")
    assert rows[2].ok and rows[2].values == {"client_name": "Linus", "company_name": "Umbrella"}


def test_repeated_columns_are_warned_and_the_first_is_used(tmp_path: Path) -> None:
    from loom.recipients import read_sheet

    sheet = tmp_path / "s.csv"
    sheet.write_text("client_name,company_name,client_name\nAda,Acme,Eve\n")
    read = read_sheet(str(sheet))
    assert read.rows[0].values["client_name"] == "Ada"
    assert read.warnings == [
        "sheet: column 'client_name' appears more than once (columns 1 and 3); column 1 is used (rename or delete the other)"
    ]


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf"])
def test_an_empty_csv_is_one_line(tmp_path: Path, content: bytes) -> None:
    from loom.recipients import read_sheet

    (tmp_path / "s.csv").write_bytes(content)
    with pytest.raises(InputError, match="is empty"):
        read_sheet(str(tmp_path / "s.csv"))


def test_a_sheet_that_is_a_folder_is_one_line(tmp_path: Path) -> None:
    from loom.recipients import read_sheet

    (tmp_path / "s.csv").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        read_sheet(str(tmp_path / "s.csv"))


# ---------------------------------------------------------------- rows of a campaign held to the policy


def test_campaign_rows_naming_private_files_internal_services_or_bad_hosts_fail_alone(server_home: Path, tmp_path: Path) -> None:
    from loom.campaign import plan_campaign
    from loom.template import parse_template

    internal = _recorder()
    with serving(internal) as inside:
        (server_home / "media").mkdir()
        (server_home / "media" / "logo.png").write_bytes(b"\x89PNG")
        template = parse_template(
            {
                "id": "guard",
                "base_video_path": str(server_home / "media" / "base.mp4"),
                "visual_segments": [
                    {"id": "badge", "segment_type": "image", "start_time": 0.0, "end_time": 1.0, "x": 0.1, "y": 0.1,
                     "width": 0.2, "height": 0.2, "placeholder_key": "logo"},
                ],
            }
        )
        (tmp_path / "private.png").write_bytes(b"\x89PNG")
        sheet = server_home / "sheet.csv"
        sheet.write_text(
            "logo\n"
            "media/logo.png\n"
            f"{tmp_path / 'private.png'}\n"
            f"{tmp_path / 'missing.png'}\n"
            f"http://127.0.0.1:{inside.server_address[1]}/internal.png\n"
            "https://no-such-host.invalid/logo.png\n"
        )
        plan = plan_campaign(template, "v1", str(sheet), str(server_home / "out"))
    status = {e.row.number: (e.status, e.error) for e in plan.entries}
    assert status[1] == ("pending", "")
    refused = (
        "logo (row {n}): is not in a folder this server reads for clients "
        "(put the file under $LOOM_HOME or beside the template's video, or list its folder in LOOM_ALLOWED_ROOTS)"
    )
    # a private file that exists and one that does not get the same line
    assert status[2] == ("invalid", refused.format(n=2)) and status[3] == ("invalid", refused.format(n=3))
    assert status[4][0] == "invalid" and "127.0.0.1 is a loopback address" in status[4][1]
    assert status[5][0] == "pending"  # a name is only known when fetched: it fails there, alone
    assert internal.hits == []


def test_the_reader_checks_again_what_the_planner_let_through(server_home: Path, tmp_path: Path) -> None:
    """A value that reaches the logo reader some other way is held to the same rule."""
    from loom.visual.logo import load_logo

    (tmp_path / "private.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="not in a folder"):
        load_logo(str(tmp_path / "private.png"), "logo", InputPolicy.from_settings())


# ---------------------------------------------------------------- secrets and logs


def test_short_secrets_are_scrubbed_where_they_stand_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.jobs import scrub

    monkeypatch.setenv("SERVICE_TOKEN", "k3y")
    monkeypatch.setenv("OTHER_API_KEY", "long-secret-value-123")
    assert scrub("failed with k3y at xk3yz and long-secret-value-123!") == "failed with *** at xk3yz and ***!"


def test_http_client_logs_lose_their_query_strings(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from app.jobs import quiet_http_client_logs

    quiet_http_client_logs()
    with caplog.at_level(logging.INFO, logger="httpx"):
        logging.getLogger("httpx").info('HTTP Request: %s %s "%s %d %s"', "POST", "https://crm.example.com/hook?token=abc123", "HTTP/1.1", 200, "OK")
    assert "abc123" not in caplog.text and "https://crm.example.com/hook?***" in caplog.text


def test_logos_sheets_and_remote_videos_all_refuse_a_redirect_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    """The three readers of client URLs share the fetcher: none follows a hop into the network."""
    from loom import storage
    from loom.media.probe import probe_video
    from loom.recipients import read_sheet
    from loom.visual.logo import load_logo

    internal = _recorder()
    with serving(internal) as inside:
        with serving(_redirect_to(f"http://127.0.0.1:{inside.server_address[1]}/x")) as outside:
            front = f"127.0.0.1:{outside.server_address[1]}"
            monkeypatch.setenv("LOOM_INPUT_ALLOWED_HOSTS", front)
            reload_settings()
            with pytest.raises(InputError, match="loopback"):
                load_logo(f"http://{front}/logo.png", "logo")
            with pytest.raises(InputError, match="loopback"):
                read_sheet(f"http://{front}/sheet.csv")
            with pytest.raises(FetchError, match="loopback"):
                with storage.local_path(f"http://{front}/base.mp4"):
                    pass
            with pytest.raises(InputError, match="loopback") as err:
                probe_video(f"http://{front}/base.mp4")
            assert err.value.field == "base_video_path"
    assert internal.hits == []
