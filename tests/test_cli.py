"""The `loom` CLI as a user runs it: a real subprocess, its stdout, stderr and exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from testkit.media import decode_rgb, make_clip, psnr

LOOM = [sys.executable, "-m", "app.cli"]
ROOT = Path(__file__).resolve().parents[1]


def run_loom(*args: str, home: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELEVENLABS_", "PREFECT_API_URL"))}
    env.update({"LOOM_HOME": str(home), "PYTHONPATH": str(ROOT)})
    env.update(extra_env or {})
    return subprocess.run([*LOOM, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def seed_template(video: Path, **overrides: object) -> dict[str, object]:
    """A template in the seed's format, for a 320x240 clip this repository has never seen."""
    template = {
        "id": "unseen-template",
        "name": "Never seen before",
        "base_video_path": str(video),
        "voice_id": "21m00Tcm4TlvDq8ikWAM",
        "voice_segments": [{"id": "hello", "start_time": 0.2, "end_time": 2.6, "template_text": "Hi {client_name}!"}],
        "visual_segments": [
            {"id": "company", "segment_type": "text", "start_time": 0.4, "end_time": 1.6,
             "x": 0.05, "y": 0.05, "width": 0.5, "height": 0.15, "placeholder_key": "company_name"},
            {"id": "brand", "segment_type": "image", "start_time": 0.4, "end_time": 1.6,
             "x": 0.7, "y": 0.6, "width": 0.2, "height": 0.25, "placeholder_key": "logo"},
        ],
    }
    template.update(overrides)
    return template


def test_segment_after_the_video_exits_2_with_one_line(tmp_path: Path) -> None:
    video = make_clip(tmp_path / "base.mp4", seconds=2.0)
    template = seed_template(video)
    template["voice_segments"][0]["end_time"] = 5.0  # type: ignore[index]
    (tmp_path / "t.json").write_text(json.dumps(template))
    (tmp_path / "row.json").write_text(json.dumps({"client_name": "Ada", "company_name": "Globex", "logo": "x.png"}))
    proc = run_loom("personalize", "--template", str(tmp_path / "t.json"), "--data", str(tmp_path / "row.json"),
                    home=tmp_path / "home")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "end_time" in lines[0] and "after the end of the video" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_missing_value_exits_2_naming_the_field(tmp_path: Path) -> None:
    video = make_clip(tmp_path / "base.mp4", seconds=2.0, audio=False)
    (tmp_path / "t.json").write_text(json.dumps(seed_template(video)))
    (tmp_path / "row.json").write_text(json.dumps({"client_name": "Ada", "logo": "x.png"}))
    proc = run_loom("personalize", "--template", str(tmp_path / "t.json"), "--data", str(tmp_path / "row.json"),
                    home=tmp_path / "home")
    assert proc.returncode == 2
    assert "company_name" in proc.stderr and "Traceback" not in proc.stderr


def test_personalize_unseen_template_prints_output_last(tmp_path: Path) -> None:
    video = make_clip(tmp_path / "base.mp4", seconds=3.0)
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (64, 64), (200, 30, 30, 255)).save(logo)
    (tmp_path / "t.json").write_text(json.dumps(seed_template(video)))
    (tmp_path / "row.json").write_text(json.dumps({"client_name": "Ada", "company_name": "Globex", "logo": str(logo)}))
    out = tmp_path / "out" / "ada.mp4"
    proc = run_loom("personalize", "--template", str(tmp_path / "t.json"), "--data", str(tmp_path / "row.json"),
                    "--out", str(out), home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    assert "offline voice" in proc.stderr  # said once, since no ElevenLabs key is set
    # what is sent with the video lies beside it, and the share page is named
    assert (out.parent / "ada.poster.jpg").is_file() and (out.parent / "ada.email.html").is_file()
    assert Image.open(out.parent / "ada.gif").n_frames >= 10
    assert any(line.startswith("share page: http") for line in proc.stdout.splitlines())
    original, made = decode_rgb(video), decode_rgb(out)
    assert len(made) == len(original)
    # the video differs from the base only inside its visual segments' frames (0.4 s - 1.6 s at 25 fps):
    # frames outside may be re-encoded (their GOP holds a cut) but stay >= 42 dB
    outside = [psnr(a, b) for i, (a, b) in enumerate(zip(original, made)) if not 10 <= i < 40]
    inside = [psnr(a, b) for a, b in zip(original[10:40], made[10:40])]
    assert min(outside) >= 42
    assert max(inside) < 35


@pytest.mark.parametrize("command", ["serve", "up"])
def test_help_of_every_command(command: str, tmp_path: Path) -> None:
    proc = run_loom(command, "--help", home=tmp_path)
    assert proc.returncode == 0 and "--port" in proc.stdout


def test_a_line_too_long_for_its_window_fails_the_recipient_with_one_line_and_no_video(tmp_path: Path) -> None:
    # The voice line is spoken while the video spans encode; its failure must still end the run
    # with the fitting step's one line, and leave no video behind.
    video = make_clip(tmp_path / "base.mp4", seconds=3.0)
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (64, 64), (200, 30, 30, 255)).save(logo)
    (tmp_path / "t.json").write_text(json.dumps(seed_template(video)))
    name = "Bartholomew Maximilian Alexander Montgomery-Fitzgerald the Third of Westminster"
    (tmp_path / "row.json").write_text(json.dumps({"client_name": name, "company_name": "Globex", "logo": str(logo)}))
    out = tmp_path / "out" / "long.mp4"
    proc = run_loom("personalize", "--template", str(tmp_path / "t.json"), "--data", str(tmp_path / "row.json"),
                    "--out", str(out), home=tmp_path / "home")
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and 'line "hello" needs' in errors[0] and "s of speech" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no staged half-video either


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's PostgreSQL runs as another user, who may not reach the folder")
def test_up_postgres_with_a_folder_the_postgres_user_cannot_reach_is_one_line(tmp_path: Path) -> None:
    from app.stack import free_port

    hidden = tmp_path / "closed"  # pytest's temporary folders are root's alone (0700)
    proc = run_loom("up", "--postgres", "--postgres-dir", str(hidden / "pg"), "--port", str(free_port()), home=tmp_path,
                    extra_env={"PREFECT_HOME": str(tmp_path / "prefect-home")})  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--postgres-dir" in errors[0] and "postgres user cannot write" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
