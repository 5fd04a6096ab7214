"""Draw one visual segment's replacement (text or image) along its tracked box."""

from __future__ import annotations

from prefect import task

from loom import pipeline
from loom.edits import PatchSetRef
from loom.prepared import PreparedTemplate
from loom.template import VisualSegment
from tasks.retries import network_retry_options


# Image values may be https:// or gs:// URIs that are fetched: retried like other network calls.
@task(name="draw-visual", **network_retry_options())
def draw_visual(prepared: PreparedTemplate, segment: VisualSegment, values: dict[str, str], workdir: str) -> PatchSetRef:
    """Patches that replace the segment's box in its frames (``pipeline.draw_visual``)."""
    return pipeline.draw_visual(prepared, segment, values, workdir)
