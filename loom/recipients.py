"""Recipient rows: the seed's flat JSON object, or a CSV/XLSX sheet whose columns are placeholders.

Each row is checked against the template on its own, so one bad row never costs the others.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import unicodedata
from dataclasses import dataclass, field

from loom import storage
from loom.errors import InputError
from loom.fetch import FetchError, TooLarge
from loom.input_policy import InputPolicy
from loom.template import Template, render_text

MAX_TEXT_CHARS = 300
MAX_URI_CHARS = 2048
PRONUNCIATION_SUFFIX = "_pronunciation"
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass
class Row:
    """One recipient as read: its number in the sheet (1 = first data row) and raw values."""

    number: int
    values: dict[str, str]
    error: str | None = None  # a row that cannot be read as its columns (more values than columns)


@dataclass
class CheckedRow:
    """A row after validation: ``values`` usable as-is, or ``error`` saying what is wrong."""

    number: int
    values: dict[str, str]
    key: str = ""
    error: str | None = None
    duplicate_of: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.duplicate_of is None

    @property
    def label(self) -> str:
        for name in ("client_name", "company_name", "name", "email"):
            if self.values.get(name):
                return self.values[name]
        return next((v for v in self.values.values() if v), f"row {self.number}")


def _clean_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN: an empty cell as pandas reads it
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    # Sheets carry line breaks and tabs inside cells; on screen and in speech they are spaces.
    return re.sub(r"[ \r\n\t]+", " ", text).strip()


def check_value(key: str, value: str, *, is_image: bool, where: str = "") -> str:
    """One value's problems, in one line naming the field and the fix."""
    label = f"{key}{where}"
    if not value or not value.strip():
        raise InputError(label, "is empty", f"fill in {key}")
    limit = MAX_URI_CHARS if is_image else MAX_TEXT_CHARS
    if len(value) > limit:
        raise InputError(label, f"{len(value)} characters is too long", f"use at most {limit}")
    for ch in value:
        if unicodedata.category(ch) == "Cc":
            raise InputError(label, f"contains the control character U+{ord(ch):04X}", "remove it")
        if ch in BIDI_CONTROLS:
            # Overrides reorder what is shown vs. what is stored (a spoofing trick); real RTL text needs none.
            raise InputError(label, f"contains the bidirectional control U+{ord(ch):04X}", "remove it")
    return value.strip()


def check_row(template: Template, values: dict[str, object], number: int | None = None) -> dict[str, str]:
    """Values for every placeholder of the template (plus pronunciations), or ``InputError``."""
    where = f" (row {number})" if number is not None else ""
    wanted = set(template.placeholders())
    for k, v in values.items():
        name = str(k).strip()
        if (name in wanted or name.removesuffix(PRONUNCIATION_SUFFIX) in wanted) and isinstance(v, (dict, list, tuple, set, bool)):
            raise InputError(f"{str(k).strip()}{where}", f"must be text, not {type(v).__name__}", f'give "{k}" as a string')
    clean = {str(k).strip(): _clean_cell(v) for k, v in values.items() if k is not None}
    image_keys = template.image_keys()
    out: dict[str, str] = {}
    for key in template.placeholders():
        if key not in clean:
            raise InputError(f"{key}{where}", "is missing", f"add a {key!r} column/field")
        out[key] = check_value(key, clean[key], is_image=key in image_keys, where=where)
    for key, value in clean.items():
        if key.endswith(PRONUNCIATION_SUFFIX) and key.removesuffix(PRONUNCIATION_SUFFIX) in out and value:
            out[key] = check_value(key, value, is_image=False, where=where)
    return out


def spoken_values(values: dict[str, str]) -> dict[str, str]:
    """Values as they should be said: a ``<key>_pronunciation`` replaces ``<key>`` in speech only."""
    spoken = dict(values)
    for key, value in values.items():
        if key.endswith(PRONUNCIATION_SUFFIX):
            base = key.removesuffix(PRONUNCIATION_SUFFIX)
            if base in spoken and value:
                spoken[base] = value
    return spoken


def render_line(template_text: str, values: dict[str, str]) -> tuple[str, str]:
    """(on-screen/written text, spoken text) of a voice line."""
    return render_text(template_text, values), render_text(template_text, spoken_values(values))


def recipient_key(template_version: str, values: dict[str, str]) -> str:
    """Stable name for a recipient's outputs: same template version and values, same key."""
    payload = json.dumps({"t": template_version, "v": values}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


MAX_SHEET_BYTES = 20 * 2**20
MAX_SHEET_ROWS = 100_000
MAX_SHEET_COLUMNS = 256
# An XLSX is a zip: 262 KB can hold hundreds of MB of XML. openpyxl reads the shared strings whole
# even in read-only mode, so their size is checked from the zip's directory before it opens them.
MAX_XLSX_SHARED_STRINGS = 32 * 2**20
MAX_XLSX_UNPACKED = 256 * 2**20  # a 100,000-row sheet of ten columns unpacks to about 60 MB
ROWS_FIX = f"split the sheet into files of at most {MAX_SHEET_ROWS:,} rows"


@dataclass
class Sheet:
    """A sheet as read: its rows, its column names, and what a person should know about it."""

    rows: list[Row]
    columns: list[str]
    warnings: list[str] = field(default_factory=list)


def _decode_csv(data: bytes, uri: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            "sheet",
            f"{uri} is not UTF-8 (byte 0x{data[exc.start]:02X} at offset {exc.start})",
            "save it as 'CSV UTF-8' or as XLSX",
        ) from None


def _header(cells: list[object], warnings: list[str]) -> list[str]:
    """Column names, each used once: a repeated name keeps its first column (and says so)."""
    cells = list(cells)
    while cells and not _clean_cell(cells[-1]):
        cells.pop()  # readers pad rows with empty cells up to the widest row
    if len(cells) > MAX_SHEET_COLUMNS:
        raise InputError("sheet", f"has {len(cells)} columns", f"keep at most {MAX_SHEET_COLUMNS}")
    names = [_clean_cell(c) for c in cells]
    seen: dict[str, int] = {}
    out = []
    for col, name in enumerate(names, start=1):
        if name and name in seen:
            warnings.append(
                f"sheet: column {name!r} appears more than once (columns {seen[name]} and {col}); "
                f"column {seen[name]} is used (rename or delete the other)"
            )
            out.append("")
            continue
        if name:
            seen[name] = col
        out.append(name)
    return out


def _record(header: list[str], cells: list[object], number: int) -> Row:
    """One data row by position; a row with more cells than the header fails alone (never shifts)."""
    values: dict[str, object] = {}
    for name, value in zip(header, cells):
        if name:
            values[name] = value
    row = Row(number=number, values=values)  # type: ignore[arg-type]
    extra = [c for c in cells[len(header) :] if _clean_cell(c)]
    if extra:
        row.error = (
            f"row {number}: has {len(header) + len(extra)} values for {len(header)} columns "
            "(a stray comma? put values that hold commas in double quotes)"
        )
    return row


def _csv_sheet(text: str, uri: str, head: int | None = None) -> Sheet:
    import csv

    warnings: list[str] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header_cells = next(reader, None)
        while header_cells is not None and not any(c.strip() for c in header_cells):
            header_cells = next(reader, None)  # blank lines before the header
        if header_cells is None:
            raise InputError("sheet", f"{uri} is empty", "add a header of placeholder names and one row per recipient")
        header = _header(header_cells, warnings)  # type: ignore[arg-type]
        rows: list[Row] = []
        for cells in reader:
            if not cells:
                continue  # blank lines between rows are not recipients (a quoted "" is a value)
            if head is not None and len(rows) >= head:
                break
            if len(rows) >= MAX_SHEET_ROWS:
                raise InputError("sheet", f"has more than {MAX_SHEET_ROWS:,} rows", ROWS_FIX)
            rows.append(_record(header, cells, len(rows) + 1))  # type: ignore[arg-type]
    except csv.Error as exc:
        raise InputError("sheet", f"{uri} is not a readable CSV (line {reader.line_num}: {exc})", "check quoting and separators") from None
    return Sheet(rows=rows, columns=[h for h in header if h], warnings=warnings)


def _xlsx_sheet(data: bytes, uri: str, head: int | None = None) -> Sheet:
    import zipfile

    import openpyxl  # only XLSX sheets need it

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except zipfile.BadZipFile:
        raise InputError("sheet", f"{uri} is not a readable XLSX file (not a zip)", "re-save it from Excel") from None
    strings = sum(i.file_size for i in entries if i.filename.lower().endswith("sharedstrings.xml"))
    unpacked = sum(i.file_size for i in entries)
    if strings > MAX_XLSX_SHARED_STRINGS or unpacked > MAX_XLSX_UNPACKED:
        raise InputError("sheet", f"{uri} holds {max(strings, unpacked) // 2**20} MB of text once unpacked", ROWS_FIX)
    try:
        # Two streaming readers in step: saved formula results, and the formulas themselves (a
        # formula with no saved result, as scripts write them, has no value to use).
        book = openpyxl.load_workbook(io.BytesIO(data), data_only=True, read_only=True)
        formulas = openpyxl.load_workbook(io.BytesIO(data), data_only=False, read_only=True)
        declared_rows = book.worksheets[0].max_row or 0  # the sheet's own <dimension>: no cells read yet
        if declared_rows > 2 * MAX_SHEET_ROWS:
            raise InputError("sheet", f"spans {declared_rows:,} rows", ROWS_FIX)
        width = min(book.worksheets[0].max_column or MAX_SHEET_COLUMNS + 1, MAX_SHEET_COLUMNS + 1)
        values_rows = book.worksheets[0].iter_rows(values_only=True, max_col=width)
        raw_rows = formulas.worksheets[0].iter_rows(values_only=True, max_col=width)
        warnings: list[str] = []
        header_cells = next(values_rows, None)
        next(raw_rows, None)
        if header_cells is None:
            raise InputError("sheet", f"{uri} is empty", "add a header of placeholder names and one row per recipient")
        header = _header(list(header_cells), warnings)
        rows: list[Row] = []
        for scanned, (cells, raw_cells) in enumerate(zip(values_rows, raw_rows), start=1):
            if scanned > 2 * MAX_SHEET_ROWS:  # empty rows count too: a sheet can declare a million
                raise InputError("sheet", f"spans more than {2 * MAX_SHEET_ROWS:,} rows", ROWS_FIX)
            if not any(_clean_cell(v) for v in cells) and not any(isinstance(v, str) and v.startswith("=") for v in raw_cells):
                continue
            if head is not None and len(rows) >= head:
                break
            if len(rows) >= MAX_SHEET_ROWS:
                raise InputError("sheet", f"has more than {MAX_SHEET_ROWS:,} rows", ROWS_FIX)
            row = _record(header, list(cells), len(rows) + 1)
            for col, (value, raw_value) in enumerate(zip(cells, raw_cells)):
                if col < len(header) and header[col] and value is None and isinstance(raw_value, str) and raw_value.startswith("="):
                    row.values[header[col]] = ""
                    row.values.setdefault("__formula__", header[col])
            if any(_clean_cell(v) for k, v in row.values.items() if k != "__formula__") or "__formula__" in row.values:
                rows.append(row)
        book.close()
        formulas.close()
    except InputError:
        raise
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise InputError("sheet", f"{uri} is not a readable XLSX file ({type(exc).__name__})", "re-save it from Excel") from None
    return Sheet(rows=rows, columns=[h for h in header if h], warnings=warnings)


def _json_sheet(data: bytes, uri: str) -> Sheet:
    try:
        parsed = json.loads(_decode_csv(data, uri))
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply or a number too long"
        raise InputError("data", f"{uri} is not valid JSON ({reason})", "fix the JSON") from None
    parsed = parsed if isinstance(parsed, list) else [parsed]
    if not all(isinstance(p, dict) for p in parsed):
        raise InputError("data", "must be a JSON object of placeholder values", 'e.g. {"client_name": "Ada"}')
    if len(parsed) > MAX_SHEET_ROWS:
        raise InputError("data", f"has more than {MAX_SHEET_ROWS:,} rows", ROWS_FIX)
    columns = list(dict.fromkeys(str(k) for p in parsed for k in p))
    return Sheet(rows=[Row(number=i, values=r) for i, r in enumerate(parsed, start=1)], columns=columns)


def read_sheet(uri: str, policy: InputPolicy | None = None, head: int | None = None) -> Sheet:
    """A sheet (CSV, XLSX) or a JSON object / list of objects, from any storage URI, within the
    sheet budgets (bytes, rows, columns). With ``policy`` the location is checked as it is read;
    with ``head`` only the first rows are read (a request checks columns without reading them all)."""
    location = policy.check("sheet", uri) if policy is not None else uri
    if not storage.exists(location):
        raise InputError("sheet", f"no file at {uri}", "check the path or URI")
    try:
        data = storage.read_bytes(location, kind="sheet", max_bytes=MAX_SHEET_BYTES)
    except TooLarge:
        raise InputError("sheet", f"is over {MAX_SHEET_BYTES // 2**20} MB", ROWS_FIX) from None
    except FetchError as exc:
        raise InputError("sheet", f"cannot be read: {exc.problem}", exc.fix) from None
    except IsADirectoryError:
        raise InputError("sheet", f"{uri} is a folder", "give the CSV or XLSX file inside it") from None
    except OSError as exc:
        raise InputError("sheet", f"cannot read {uri} ({type(exc).__name__})", "check the path or URI") from None
    lower = uri.lower().split("?")[0]
    if lower.endswith((".xlsx", ".xlsm")) or data[:2] == b"PK":
        return _xlsx_sheet(data, uri, head)
    if lower.endswith(".json"):
        return _json_sheet(data, uri)
    return _csv_sheet(_decode_csv(data, uri), uri, head)


def read_sheet_head(uri: str, policy: InputPolicy | None = None, rows: int = 5) -> Sheet:
    """The header and first ``rows`` rows of a sheet."""
    return read_sheet(uri, policy, head=rows)


def read_rows(uri: str, policy: InputPolicy | None = None) -> list[Row]:
    """The rows of ``read_sheet``."""
    return read_sheet(uri, policy).rows


def check_rows(
    template: Template, template_version: str, rows: list[Row], policy: InputPolicy | None = None
) -> list[CheckedRow]:
    """Validate every row on its own; mark repeats of an earlier row as duplicates.

    With ``policy``, every image value must name an allowed location; a row that names another
    fails alone, its line naming the column and the rule (never whether a file is there)."""
    seen: dict[str, int] = {}
    out: list[CheckedRow] = []
    image_keys = template.image_keys()
    for row in rows:
        raw = dict(row.values)
        formula_col = raw.pop("__formula__", None)
        if row.error:
            out.append(CheckedRow(number=row.number, values={k: _clean_cell(v) for k, v in raw.items()}, error=row.error))
            continue
        try:
            values = check_row(template, raw, row.number)
            if policy is not None:
                for key in image_keys:
                    values[key] = policy.check(f"{key} (row {row.number})", values[key])
        except InputError as exc:
            msg = exc.line()
            if formula_col and f"{formula_col} (row" in msg:
                msg = (
                    f"{formula_col} (row {row.number}): holds a formula with no saved result "
                    "(open and save the file in a spreadsheet app, or paste values)"
                )
            out.append(CheckedRow(number=row.number, values={k: _clean_cell(v) for k, v in raw.items()}, error=msg))
            continue
        key = recipient_key(template_version, values)
        checked = CheckedRow(number=row.number, values=values, key=key)
        if key in seen:
            checked.duplicate_of = seen[key]
        else:
            seen[key] = row.number
        out.append(checked)
    return out
