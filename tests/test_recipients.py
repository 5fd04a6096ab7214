"""Recipient rows from JSON, CSV and XLSX; each row checked on its own."""

from __future__ import annotations

import json

import openpyxl
import pytest

from loom.errors import InputError
from loom.recipients import check_row, check_rows, read_rows, recipient_key, render_line
from loom.template import parse_template
from tests.test_template import SEED

TEMPLATE = parse_template(SEED)


def test_json_row_and_pronunciation(tmp_path) -> None:
    path = tmp_path / "row.json"
    path.write_text(json.dumps({"client_name": "Siobhan", "client_name_pronunciation": "Shivawn",
                                "company_name": "Acme", "logo": "logo.png"}))
    rows = read_rows(str(path))
    values = check_row(TEMPLATE, rows[0].values)
    text, spoken = render_line("Hello {client_name}!", values)
    assert text == "Hello Siobhan!" and spoken == "Hello Shivawn!"


def test_csv_bad_rows_named_and_others_kept(tmp_path) -> None:
    path = tmp_path / "sheet.csv"
    path.write_text(
        "client_name,company_name,logo\n"
        "Ada,Acme,a.png\n"
        "Bob,,b.png\n"
        "Ada,Acme,a.png\n"
        "Cy\x07,Corp,c.png\n"
        + "D" * 10000 + ",Big,d.png\n",
        encoding="utf-8",
    )
    rows = check_rows(TEMPLATE, "v1", read_rows(str(path)))
    assert rows[0].ok
    assert rows[1].error and "company_name (row 2)" in rows[1].error and "empty" in rows[1].error
    assert rows[2].duplicate_of == 1
    assert rows[3].error and "control character" in rows[3].error
    assert rows[4].error and "too long" in rows[4].error


def test_missing_column_named(tmp_path) -> None:
    path = tmp_path / "sheet.csv"
    path.write_text("client_name,logo\nAda,a.png\n")
    rows = check_rows(TEMPLATE, "v1", read_rows(str(path)))
    assert "company_name (row 1): is missing" in rows[0].error


def test_not_utf8_sheet_says_how_to_fix(tmp_path) -> None:
    path = tmp_path / "sheet.csv"
    path.write_bytes("client_name,company_name,logo\nZoë,Acme,a.png\n".encode("cp1252"))
    with pytest.raises(InputError, match="not UTF-8.*CSV UTF-8"):
        read_rows(str(path))


def test_xlsx_values_and_unsaved_formula(tmp_path) -> None:
    book = openpyxl.Workbook()
    ws = book.active
    ws.append(["client_name", "company_name", "logo"])
    ws.append(["Ada", "Acme", "a.png"])
    ws.append(["Bob", "=UPPER(A3)", "b.png"])
    path = tmp_path / "sheet.xlsx"
    book.save(path)
    rows = check_rows(TEMPLATE, "v1", read_rows(str(path)))
    assert rows[0].ok and rows[0].values["company_name"] == "Acme"
    assert "formula" in rows[1].error and "company_name" in rows[1].error


def test_recipient_key_is_stable_and_depends_on_version() -> None:
    v = {"client_name": "Ada", "company_name": "Acme", "logo": "a.png"}
    assert recipient_key("v1", v) == recipient_key("v1", dict(reversed(list(v.items()))))
    assert recipient_key("v1", v) != recipient_key("v2", v)


def test_line_breaks_fold_and_bidi_overrides_refused() -> None:
    values = check_row(TEMPLATE, {"client_name": "Ada\r\nLovelace", "company_name": "Acme", "logo": "a.png"})
    assert values["client_name"] == "Ada Lovelace"
    with pytest.raises(InputError, match="bidirectional control"):
        check_row(TEMPLATE, {"client_name": "Ada\u202egpj.exe", "company_name": "Acme", "logo": "a.png"})
