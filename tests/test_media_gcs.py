"""Prepare and render with every file on gs:// (GCS emulator): the media steps go through loom.storage."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from loom import storage
from loom.edits import AudioInsert, PatchSetRef
from loom.media.patches import Patch, PatchSet
from loom.media.prepare import prepare_media
from loom.media.render import render_recipient
from loom.prepared import PreparedTemplate
from loom.template import Template
from tests.gcs_fixtures import gcs_bucket  # noqa: F401
from testkit.media import decode_rgb, make_clip


def test_prepare_and_render_on_gcs(gcs_bucket: str, tmp_path: Path) -> None:  # noqa: F811
    local = make_clip(tmp_path / "rec.mp4", seconds=1.2, size=(160, 120), gop=10)
    src = storage.join(gcs_bucket, "videos", "rec.mp4")
    storage.write_bytes(src, local.read_bytes())
    root = storage.join(gcs_bucket, "prepared", "t", "v1")
    media = prepare_media(src, [0.5, 0.9], root)  # frames 12 and 22: planted keyframes
    assert media.working_video_uri == storage.join(root, "working.mp4") and storage.exists(media.audio_uri)
    prepared = PreparedTemplate(template=Template(id="t", base_video_path=src), version="v1", root=root, **media.model_dump())

    ps = PatchSet()
    for f in range(12, 22):
        ps.add(f, Patch(x=4, y=4, rgba=np.full((12, 12, 4), 255, np.uint8)))
    patch_uri = ps.save(storage.join(gcs_bucket, "work", "p.npz"))
    ref = PatchSetRef(segment_id="s", kind="visual", uri=patch_uri, first_frame=12, stop_frame=22)
    wav = tmp_path / "v.wav"
    from scipy.io import wavfile

    wavfile.write(str(wav), 16000, np.zeros(6400, np.int16))
    insert_uri = storage.write_bytes(storage.join(gcs_bucket, "work", "v.wav"), wav.read_bytes())
    insert = AudioInsert(segment_id="v", uri=insert_uri, start=0.5, end=0.9, sample_rate=16000)

    out = storage.join(gcs_bucket, "outputs", "r.mp4")
    report = render_recipient(prepared, [insert], [ref], out)
    assert report.mode == "splice" and report.reencoded_spans == [(12, 22)]
    fetched = tmp_path / "r.mp4"
    fetched.write_bytes(storage.read_bytes(out))
    frames = decode_rgb(fetched)
    assert len(frames) == 30 and frames[15][6:14, 6:14].min() > 230


def test_a_later_render_reuses_the_prepared_files_the_first_one_fetched(  # noqa: F811
    gcs_bucket: str, loom_home: Path, tmp_path: Path, monkeypatch
) -> None:
    local = make_clip(tmp_path / "rec.mp4", seconds=1.2, size=(160, 120), gop=10)
    src = storage.join(gcs_bucket, "videos", "rec.mp4")
    storage.write_bytes(src, local.read_bytes())
    root = storage.join(gcs_bucket, "prepared", "t", "v1")
    media = prepare_media(src, [0.5, 0.9], root)
    prepared = PreparedTemplate(template=Template(id="t", base_video_path=src), version="v1", root=root, **media.model_dump())
    ps = PatchSet()
    for f in range(12, 22):
        ps.add(f, Patch(x=4, y=4, rgba=np.full((12, 12, 4), 255, np.uint8)))
    ref = PatchSetRef(segment_id="s", kind="visual", uri=ps.save(str(tmp_path / "p.npz")), first_frame=12, stop_frame=22)

    first = render_recipient(prepared, [], [ref], storage.join(gcs_bucket, "outputs", "a.mp4"))
    fs, _ = storage._filesystem(gcs_bucket)
    opened: list[str] = []
    real_open = fs.open
    monkeypatch.setattr(fs, "open", lambda path, mode="rb", **kw: opened.append(f"{path} {mode}") or real_open(path, mode, **kw))
    later = render_recipient(prepared, [], [ref], storage.join(gcs_bucket, "outputs", "b.mp4"))

    reads = [o for o in opened if o.endswith(" rb")]
    assert not [r for r in reads if "/prepared/" in r], f"a later recipient fetched prepared files again: {reads}"
    kept = {p.name for p in (loom_home / "cache" / "files").glob("*/*")}
    assert {"working.mp4", "audio.wav", "audio.m4a"} <= kept
    assert storage.read_bytes(later.output_uri) == storage.read_bytes(first.output_uri)  # same edits, same bytes
