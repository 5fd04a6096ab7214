"""One recipient as a Prefect flow: the steps of ``loom.pipeline.personalize``, as tasks.

Same steps, same order as the CLI's ``personalize`` (a test holds both to the same output); here
voice and visual tasks run in parallel, lip-sync goes to the GPU pool when one is configured, and
the orchestrator adds retries, caching and artifacts.
"""

from __future__ import annotations

import time

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from blocks import apply_configured_blocks
from loom import pipeline, storage
from loom.edits import PatchSetRef
from loom.pipeline import RecipientResult
from loom.recipients import check_row
from loom.settings import get_settings
from loom.template import Template, load_template
from tasks.artifacts import record_artifacts, record_lineage_assets
from tasks.compose import compose
from tasks.lipsync import lipsync_line, lipsync_on_pool
from tasks.prepare import prepare_template_fresh
from tasks.publish import publish
from tasks.visual import draw_visual
from tasks.voice import remade_if_missing, voice_line

# Voice lines and visual segments of one recipient at once; a campaign multiplies this by its
# own concurrency, so keep it small.
SEGMENT_WORKERS = 4


def gpu_pool_configured() -> bool:
    return bool(get_settings().gpu_pool)


@flow(name="personalize-recipient", task_runner=ThreadPoolTaskRunner(max_workers=SEGMENT_WORKERS), log_prints=True)
def personalize_recipient(template: str, data: dict[str, str], output: str | None = None) -> RecipientResult:
    """Make one recipient's video from a template (id or path) and a row of placeholder values."""
    apply_configured_blocks()  # deployed runs: blocks named in the environment configure the engine
    started = time.perf_counter()
    tpl = load_template(template)
    check_row(tpl, data)  # bad input fails before any expensive work
    prepared = prepare_template_fresh(tpl)
    values, key = pipeline.resolve_recipient(tpl, prepared, data)
    out_uri = pipeline.output_uri(tpl, key, output)
    workdir = pipeline.recipient_workdir(prepared, key)

    voice_futures = [voice_line.submit(prepared, seg, values) for seg in tpl.voice_segments]
    visual_futures = [draw_visual.submit(prepared, seg, values, workdir) for seg in tpl.visual_segments]
    inserts = [remade_if_missing(f.result(), prepared, seg, values) for f, seg in zip(voice_futures, tpl.voice_segments)]

    lipsync_task = lipsync_on_pool if gpu_pool_configured() else lipsync_line
    lipsync_futures = [lipsync_task.submit(prepared, seg, ins, workdir) for seg, ins in zip(tpl.voice_segments, inserts)]
    patch_sets: list[PatchSetRef] = [ref for ref in (f.result() for f in lipsync_futures) if ref is not None]
    patch_sets += [f.result() for f in visual_futures]

    render = compose(prepared, inserts, patch_sets, out_uri)
    result = publish(prepared, key, values, inserts, patch_sets, render, out_uri, started)
    storage.remove(workdir)
    record_artifacts(prepared, result)
    record_lineage_assets(prepared, result)
    return result
