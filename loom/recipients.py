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


def _xlsx_rows(data: bytes, uri: str) -> list[dict[str, object]]:
    import openpyxl  # only XLSX sheets need it

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), data_only=True, read_only=True)
        formulas = openpyxl.load_workbook(io.BytesIO(data), data_only=False, read_only=True)
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise InputError("sheet", f"{uri} is not a readable XLSX file ({type(exc).__name__})", "re-save it from Excel") from None
    sheet, raw = book.worksheets[0], formulas.worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    raw_rows = list(raw.iter_rows(values_only=True))
    if not rows:
        return []
    header = [_clean_cell(h) for h in rows[0]]
    out = []
    for r, (row, raw_row) in enumerate(zip(rows[1:], raw_rows[1:]), start=1):
        record: dict[str, object] = {}
        for col, (value, raw_value) in enumerate(zip(row, raw_row)):
            if col >= len(header) or not header[col]:
                continue
            if value is None and isinstance(raw_value, str) and raw_value.startswith("="):
                # A formula whose result was never saved (files written by scripts): no value to use.
                value = ""
                record.setdefault("__formula__", header[col])
            record[header[col]] = value
        if any(_clean_cell(v) for k, v in record.items() if k != "__formula__"):
            out.append(record)
    return out


def read_rows(uri: str) -> list[Row]:
    """Rows of a sheet (CSV, XLSX) or of a JSON object / list of objects, from any storage URI."""
    if not storage.exists(uri):
        raise InputError("sheet", f"no file at {uri}", "check the path or URI")
    data = storage.read_bytes(uri)
    lower = uri.lower().split("?")[0]
    records: list[dict[str, object]]
    if lower.endswith((".xlsx", ".xlsm")) or data[:2] == b"PK":
        records = _xlsx_rows(data, uri)
    elif lower.endswith(".json"):
        try:
            parsed = json.loads(_decode_csv(data, uri))
        except json.JSONDecodeError as exc:
            raise InputError("data", f"{uri} is not valid JSON ({exc.msg})", "fix the JSON") from None
        parsed = parsed if isinstance(parsed, list) else [parsed]
        if not all(isinstance(p, dict) for p in parsed):
            raise InputError("data", "must be a JSON object of placeholder values", 'e.g. {"client_name": "Ada"}')
        records = parsed
    else:
        import pandas as pd  # only sheets need it (~0.2-0.6 s to import)

        text = _decode_csv(data, uri)
        try:
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=True)
        except pd.errors.ParserError as exc:
            raise InputError("sheet", f"{uri} is not a readable CSV ({exc})", "check quoting and separators") from None
        records = frame.to_dict(orient="records")
    return [Row(number=i, values=r) for i, r in enumerate(records, start=1)]  # type: ignore[arg-type]


def check_rows(template: Template, template_version: str, rows: list[Row]) -> list[CheckedRow]:
    """Validate every row on its own; mark repeats of an earlier row as duplicates."""
    seen: dict[str, int] = {}
    out: list[CheckedRow] = []
    for row in rows:
        raw = dict(row.values)
        formula_col = raw.pop("__formula__", None)
        try:
            values = check_row(template, raw, row.number)
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
