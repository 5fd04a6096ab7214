"""One composition of a recipient's steps (``pipeline.run_recipient``): what runs, with what, and
the one lip-sync rule, whichever way the steps run (here: in this process, recorded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loom import pipeline
from loom.lipsync.checkpoint import write_random_checkpoint
from loom.settings import reload_settings
from tests.test_lipsync_fixtures import make_prepared
from testkit.media import make_clip


class Recorded(pipeline.InProcessSteps):
    """The in-process steps, each call written down."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def voice(self, job, segment):  # noqa: ANN001, ANN201
        self.calls.append(("voice", segment.id))
        return super().voice(job, segment)

    def draw(self, job, segment):  # noqa: ANN001, ANN201
        self.calls.append(("draw", segment.id))
        return super().draw(job, segment)

    def lipsync(self, job, segment, voice):  # noqa: ANN001, ANN201
        self.calls.append(("lipsync", segment.id))
        return super().lipsync(job, segment, voice)

    def compose(self, job, voices, patch_sets):  # noqa: ANN001, ANN201
        self.calls.append(("compose", ",".join(p.segment_id for p in patch_sets)))
        return super().compose(job, voices, patch_sets)

    def publish(self, job, inserts, patch_sets, render):  # noqa: ANN001, ANN201
        self.calls.append(("publish", ",".join(i.segment_id for i in inserts)))
        return super().publish(job, inserts, patch_sets, render)


@pytest.fixture
def prepared(tmp_path: Path, loom_home: Path):  # noqa: ANN201
    """A face clip with a voice window (a face in it: lip-sync wanted) and a second, lip-sync off."""
    prepared = make_prepared(tmp_path / "prep", 0.4, 1.0)
    template = prepared.template.model_copy(update={"voice_segments": [
        prepared.template.voice_segments[0],
        prepared.template.voice_segments[0].model_copy(update={"id": "quiet", "start_time": 1.6, "end_time": 2.2, "lipsync": False}),
    ]})
    make_clip(tmp_path / "audio-src.mp4", seconds=2.4, size=(64, 48))
    from loom.media.audio_mix import extract_audio

    extract_audio(str(tmp_path / "audio-src.mp4"), prepared.audio_uri, 0.0, 2.4)
    return prepared.model_copy(update={"template": template})


def _run(prepared, tmp_path: Path) -> tuple[Recorded, pipeline.RecipientResult]:  # noqa: ANN001
    job = pipeline.plan_recipient(prepared.template, prepared, {"name": "Ada"}, str(tmp_path / "out.mp4"))
    with Recorded() as steps:
        result = pipeline.run_recipient(job, steps)
    return steps, result


def test_without_a_backend_no_window_waits_for_lipsync(prepared, tmp_path: Path) -> None:  # noqa: ANN001
    steps, result = _run(prepared, tmp_path)
    assert steps.calls == [("voice", "hello"), ("voice", "quiet"), ("compose", ""), ("publish", "hello,quiet")]
    assert Path(result.output_uri).is_file() and result.patches == []
    # the fitted lines are kept under the prepared template, as the flow's voice task keeps them
    for insert in result.voice:
        assert insert.uri.startswith(pipeline.storage.join(prepared.root, "voice", insert.segment_id))


def test_with_a_backend_only_the_wanted_window_is_lipsynced(prepared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("LOOM_WAV2LIP_CHECKPOINT", str(write_random_checkpoint(tmp_path / "w.pth", seed=1)))
    monkeypatch.setenv("LOOM_WAV2LIP_DEVICE", "cpu")
    reload_settings()
    try:
        steps, result = _run(prepared, tmp_path)
    finally:
        monkeypatch.undo()
        reload_settings()
    assert steps.calls == [("voice", "hello"), ("voice", "quiet"), ("lipsync", "hello"), ("compose", "hello"), ("publish", "hello,quiet")]
    (lips,) = result.patches
    assert lips.kind == "lipsync" and lips.frames_patched > 0
