"""Bad recipient data (docs/bad-input.md, rows 1-4 and 13-15): each case gets one line naming
the field and the fix — through the engine's row checks and through the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app as cli
from loom.errors import InputError
from loom.recipients import check_row, check_rows, read_rows
from loom.template import parse_template

TEMPLATE = parse_template(
    {
        "id": "rows-demo",
        "base_video_path": "base.mp4",
        "voice_segments": [{"id": "hi", "start_time": 0.2, "end_time": 1.0, "template_text": "Hi {client_name}!"}],
        "visual_segments": [
            {"id": "plate", "segment_type": "text", "start_time": 0.2, "end_time": 1.0, "x": 0.1, "y": 0.1,
             "width": 0.3, "height": 0.1, "placeholder_key": "company_name"},
        ],
    }
)


def _checked(tmp_path: Path, name: str, data: bytes) -> list:
    sheet = tmp_path / name
    sheet.write_bytes(data)
    return check_rows(TEMPLATE, "v1", read_rows(str(sheet)))


def test_missing_column_names_it_and_keeps_other_rows(tmp_path: Path) -> None:
    rows = _checked(tmp_path, "s.csv", b"client_name\nAda\nGrace\n")
    assert [r.ok for r in rows] == [False, False]
    assert rows[0].error == "company_name (row 1): is missing (add a 'company_name' column/field)"


def test_empty_value_names_the_row_and_field(tmp_path: Path) -> None:
    rows = _checked(tmp_path, "s.csv", b"client_name,company_name\nAda,Acme\nGrace,   \n")
    assert rows[0].ok and not rows[1].ok
    assert rows[1].error.startswith("company_name (row 2): is empty")


def test_10000_character_name_is_refused() -> None:
    with pytest.raises(InputError) as err:
        check_row(TEMPLATE, {"client_name": "A" * 10_000, "company_name": "Acme"})
    assert err.value.field == "client_name" and "10000 characters is too long" in err.value.line()
    assert len(err.value.line()) < 200  # the value itself is not echoed


@pytest.mark.parametrize("bad", ["Ada\x00", "Ada\x07", "\x1b[31mAda", "Ada\x7f", "A\x85da"])
def test_control_characters_are_refused(bad: str) -> None:
    with pytest.raises(InputError) as err:
        check_row(TEMPLATE, {"client_name": bad, "company_name": "Acme"})
    assert err.value.field == "client_name" and "control character U+" in err.value.problem


def test_line_breaks_and_tabs_in_cells_become_spaces() -> None:
    values = check_row(TEMPLATE, {"client_name": "Ada\r\nLovelace", "company_name": "Acme\tInc"})
    assert values["company_name"] == "Acme Inc"
    assert values["client_name"].split() == ["Ada", "Lovelace"]


def test_sheet_that_is_not_utf8_says_how_to_save_it(tmp_path: Path) -> None:
    sheet = tmp_path / "latin1.csv"
    sheet.write_bytes("client_name,company_name\nJosé,Café Ñu\n".encode("latin-1"))
    with pytest.raises(InputError) as err:
        read_rows(str(sheet))
    assert err.value.field == "sheet" and "not UTF-8" in err.value.problem and "CSV UTF-8" in err.value.line()


def test_utf16_and_bom_sheets_are_read(tmp_path: Path) -> None:
    for name, data in (
        ("bom.csv", "\ufeffclient_name,company_name\nJosé,Café\n".encode("utf-8")),
        ("u16.csv", "client_name,company_name\nJosé,Café\n".encode("utf-16")),
    ):
        rows = _checked(tmp_path, name, data)
        assert rows[0].ok and rows[0].values == {"client_name": "José", "company_name": "Café"}, name


def test_xlsx_formulas_use_saved_values_and_unsaved_ones_are_named(tmp_path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["client_name", "company_name"])
    sheet.append(["Ada", '=CONCAT("Ac","me")'])  # written by a script: no cached result
    sheet.append(["Grace", "Navy"])
    book.save(tmp_path / "s.xlsx")
    rows = check_rows(TEMPLATE, "v1", read_rows(str(tmp_path / "s.xlsx")))
    assert not rows[0].ok and rows[1].ok
    assert rows[0].error.startswith("company_name (row 1): holds a formula with no saved result")
    assert "=CONCAT" not in json.dumps(rows[1].values)


def test_formula_text_never_runs_as_a_formula(tmp_path: Path) -> None:
    """A CSV cell like =HYPERLINK(...) is just text for the video (never evaluated)."""
    rows = _checked(tmp_path, "s.csv", b'client_name,company_name\nAda,"=HYPERLINK(""http://x"",""y"")"\n')
    assert rows[0].ok and rows[0].values["company_name"].startswith("=HYPERLINK")


def test_duplicate_rows_are_made_once(tmp_path: Path) -> None:
    rows = _checked(tmp_path, "s.csv", b"client_name,company_name\nAda,Acme\nGrace,Navy\n Ada ,Acme\n")
    assert [r.ok for r in rows] == [True, True, False]
    assert rows[2].duplicate_of == 1 and rows[2].key == rows[0].key


def test_cli_bad_row_is_one_line_exit_2(tmp_path: Path, loom_home: Path) -> None:
    """The CLI says the same thing in one line on stderr, exit code 2, no traceback."""
    template = dict(TEMPLATE.model_dump(), base_video_path=str(tmp_path / "base.mp4"))
    (tmp_path / "t.json").write_text(json.dumps(template))
    for data, field in (({"client_name": "Ada"}, "company_name"), ({"client_name": "A" * 10_000, "company_name": "x"}, "client_name")):
        (tmp_path / "row.json").write_text(json.dumps(data))
        result = CliRunner().invoke(cli, ["personalize", "--template", str(tmp_path / "t.json"), "--data", str(tmp_path / "row.json")])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: {field}") and "Traceback" not in result.output
