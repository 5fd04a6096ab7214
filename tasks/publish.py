"""Publish a recipient: the lineage record beside the video, and what the Prefect UI shows for it
(link, summary and lineage artifacts, asset materializations), in one task."""

from __future__ import annotations

from prefect import task

from loom import pipeline
from loom.edits import AudioInsert, PatchSetRef
from loom.pipeline import RecipientResult
from loom.prepared import PreparedTemplate
from tasks.artifacts import record_artifacts, record_lineage_assets
from tasks.retries import network_retry_options


@task(name="publish", **network_retry_options())
def publish(
    prepared: PreparedTemplate,
    key: str,
    values: dict[str, str],
    inserts: list[AudioInsert],
    patch_sets: list[PatchSetRef],
    render: dict[str, object],
    out_uri: str,
    started: float,
    assets: bool = True,
) -> RecipientResult:
    """The recipient's result record, written beside the video (``pipeline.publish``), and its
    artifacts; with ``assets`` also its lineage as asset materializations (a campaign records its
    rows' lineage once, at its end)."""
    result = pipeline.publish(prepared, key, values, inserts, patch_sets, render, out_uri, started)
    record_artifacts(prepared, result)
    if assets:
        record_lineage_assets(prepared, result)
    return result
