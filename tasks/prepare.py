"""Prepare a template once per version: cached by the template version, persisted across runs."""

from __future__ import annotations

from typing import Any

from prefect import task

from loom import pipeline, storage
from loom.prepared import PreparedTemplate
from loom.template import Template
from tasks.caching import ContentKey
from tasks.retries import is_transient


def _template_version(inputs: dict[str, Any]) -> str:
    # Hashes the base video's bytes, the template JSON and the prepare code version.
    return pipeline.template_version(inputs["template"])


PREPARE_CACHE = ContentKey(content=_template_version, name="prepare")


@task(
    name="prepare-template",
    cache_policy=PREPARE_CACHE,
    persist_result=True,
    # Reads the base video from storage (gs://, https://): one more try for a dropped connection.
    retries=1,
    retry_delay_seconds=5,
    retry_jitter_factor=0.5,
    retry_condition_fn=is_transient,
)
def prepare_template(template: Template) -> PreparedTemplate:
    """Working video, original audio, tracks and faces of the template (``pipeline.prepare_template``)."""
    return pipeline.prepare_template(template)


def prepared_files_exist(prepared: PreparedTemplate) -> bool:
    """A cached result is only good while the files it names are still there."""
    return storage.exists(storage.join(prepared.root, "prepared.json")) and storage.exists(prepared.working_video_uri)


def prepare_template_fresh(template: Template) -> PreparedTemplate:
    """The prepared template, from Prefect's cache when its files are still in storage."""
    prepared = prepare_template(template)
    if not prepared_files_exist(prepared):
        prepared = prepare_template.with_options(refresh_cache=True)(template)
    return prepared
