"""Compose the recipient's video: decode only the edited spans, patch, re-encode, splice."""

from __future__ import annotations

from prefect import task

from loom import pipeline
from loom.edits import AudioInsert, PatchSetRef
from loom.prepared import PreparedTemplate


@task(name="compose")
def compose(prepared: PreparedTemplate, inserts: list[AudioInsert], patch_sets: list[PatchSetRef], out_uri: str) -> dict[str, object]:
    """The video at ``out_uri`` and the render report (``pipeline.compose``)."""
    return pipeline.compose(prepared, inserts, patch_sets, out_uri)
