"""The CLI's answer to each bad input of issue 16: exit code 2 and one line naming the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app as cli
from tests.test_bad_input_rows import TEMPLATE
from testkit.media import make_clip


def _one_line(result, starts: str) -> str:  # noqa: ANN001
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith(f"error: {starts}"), lines[0]
    return lines[0]


@pytest.fixture
def template_file(tmp_path: Path, loom_home: Path) -> Path:
    data = dict(TEMPLATE.model_dump(), base_video_path=str(tmp_path / "base.mp4"))
    (tmp_path / "t.json").write_text(json.dumps(data))
    return tmp_path / "t.json"


def _personalize(template: Path, data: str, *extra: str):  # noqa: ANN202
    return CliRunner().invoke(cli, ["personalize", "--template", str(template), "--data", data, *extra])


def test_a_value_that_is_not_text_is_refused(template_file: Path) -> None:
    line = _one_line(_personalize(template_file, '{"client_name": {"a": 1}, "company_name": "Acme"}'), "client_name")
    assert "must be text" in line


def test_a_5000_digit_number_is_refused(template_file: Path) -> None:
    _one_line(_personalize(template_file, '{"client_name": ' + "9" * 5000 + ', "company_name": "Acme"}'), "data")


def test_deeply_nested_json_is_refused(template_file: Path, tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    _one_line(_personalize(template_file, '{"client_name": ' + deep + "}"), "data")
    (tmp_path / "deep.json").write_text('{"id": "x", "voice_segments": ' + deep + "}")
    _one_line(_personalize(tmp_path / "deep.json", '{"client_name": "Ada"}'), "template")


def test_an_unwritable_out_is_named_before_any_work(template_file: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    line = _one_line(_personalize(template_file, '{"client_name": "Ada", "company_name": "Acme"}', "--out", str(tmp_path / "a-file" / "v.mp4")), "--out")
    assert "cannot write" in line


def test_a_base_video_that_is_a_folder_is_named(template_file: Path, tmp_path: Path) -> None:
    (tmp_path / "base.mp4").mkdir()
    _one_line(_personalize(template_file, '{"client_name": "Ada", "company_name": "Acme"}'), "base_video_path")


@pytest.mark.parametrize("kind", ["folder", "empty"])
def test_campaign_sheets_that_cannot_be_read_are_one_line(template_file: Path, tmp_path: Path, kind: str) -> None:
    make_clip(tmp_path / "base.mp4", seconds=2.0)
    sheet = tmp_path / "s.csv"
    sheet.mkdir() if kind == "folder" else sheet.write_bytes(b"")
    result = CliRunner().invoke(cli, ["campaign", "--template", str(template_file), "--sheet", str(sheet), "--no-prefect"])
    _one_line(result, "sheet")


def test_create_template_says_stored_only_once_it_is(tmp_path: Path, loom_home: Path) -> None:
    make_clip(tmp_path / "base.mp4", seconds=2.0)
    data = dict(TEMPLATE.model_dump(), base_video_path=str(tmp_path / "base.mp4"))
    (tmp_path / "t.json").write_text(json.dumps(data))
    loom_home.mkdir(parents=True, exist_ok=True)
    (loom_home / "templates").write_text("a file where the templates folder goes")
    result = CliRunner().invoke(cli, ["create-template", "--config", str(tmp_path / "t.json"), "--no-prepare"])
    _one_line(result, "LOOM_HOME")
    assert "stored" not in result.stdout


def test_bad_ports_and_settings_are_one_line_naming_them(tmp_path: Path) -> None:
    loom = [sys.executable, "-m", "app.cli"]
    env = {**os.environ, "LOOM_HOME": str(tmp_path / "home")}
    serve = subprocess.run([*loom, "serve", "--port", "99999"], capture_output=True, text=True, env=env, timeout=60)
    assert serve.returncode == 2 and serve.stderr.strip() == "error: --port: 99999 is not a port (use a number between 1 and 65535)"
    bad = subprocess.run([*loom, "personalize", "--template", "x", "--data", "{}"], capture_output=True, text=True, env={**env, "LOOM_CACHE_MB": "-5"}, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: LOOM_CACHE_MB:"), bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
