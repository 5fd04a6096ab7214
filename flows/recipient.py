"""One recipient as a Prefect flow: the steps of ``loom.pipeline.personalize``, as tasks.

Same steps, same order as the CLI's ``personalize`` (a test holds both to the same output); here
voice and visual tasks run in parallel, lip-sync goes to the GPU pool when one is configured, and
the orchestrator adds retries, caching and artifacts. ``recipient_steps`` is the body, shared with
the campaign flow, whose rows run the same tasks without a flow run of their own each.
"""

from __future__ import annotations

import time

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from blocks import apply_configured_blocks
from loom import pipeline, storage
from loom.edits import AudioInsert, PatchSetRef
from loom.pipeline import RecipientResult
from loom.prepared import PreparedTemplate
from loom.recipients import check_row
from loom.settings import get_settings
from loom.template import Template, VisualSegment, load_template
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


def _lipsync(prepared: PreparedTemplate, segments: list, inserts: list[AudioInsert], workdir: str, parallel: bool) -> list[PatchSetRef]:
    """Lip-sync tasks for the windows that will be lip-synced; the others are settled here without a
    task (the engine logs why: lip-sync off, no face, or no checkpoint)."""
    on_pool = gpu_pool_configured()
    step = lipsync_on_pool if on_pool else lipsync_line
    wanted = []
    for seg, ins in zip(segments, inserts):
        if on_pool or pipeline.lipsync_will_run(prepared, seg):
            wanted.append((seg, ins))
        else:
            pipeline.lipsync_line(prepared, seg, ins, workdir)  # returns None at once; warns once per process
    if parallel:
        refs = [f.result() for f in [step.submit(prepared, seg, ins, workdir) for seg, ins in wanted]]
    else:
        refs = [step(prepared, seg, ins, workdir) for seg, ins in wanted]
    return [ref for ref in refs if ref is not None]


def _fetches(segment: VisualSegment, values: dict[str, str]) -> bool:
    """Whether drawing this segment reads its value over a network (an image at gs:// or https://)."""
    return segment.segment_type == "image" and storage.is_remote(values.get(segment.placeholder_key, ""))


def recipient_steps(
    template: Template, prepared: PreparedTemplate, data: dict[str, str], output: str | None, parallel: bool = True
) -> RecipientResult:
    """Make one recipient's video in the current flow run.

    ``parallel`` (a recipient's own flow run): every step is a task, voice and visual tasks submitted
    at once. Otherwise (a campaign row, itself a task, beside other rows): the steps that call a
    network (voice, lip-sync, fetched logos) stay tasks for their retries and caches; the local ones
    (drawing, compose, publish) run as plain calls of the same task functions (``.fn``), and the
    lineage assets are left to the campaign, which records them for all its rows at once. On the
    local SQLite server each task run is several writes: a sheet of rows times eight task runs kept
    it busy (and locked) long after the campaign returned.
    """
    started = time.perf_counter()
    values, key = pipeline.resolve_recipient(template, prepared, data)
    out_uri = pipeline.output_uri(template, key, output)
    workdir = pipeline.recipient_workdir(prepared, key)
    voices, visuals = template.voice_segments, template.visual_segments
    if parallel:
        voice_futures = [voice_line.submit(prepared, seg, values) for seg in voices]
        visual_futures = [draw_visual.submit(prepared, seg, values, workdir) for seg in visuals]
        inserts = [remade_if_missing(f.result(), prepared, seg, values) for f, seg in zip(voice_futures, voices)]
    else:
        inserts = [remade_if_missing(voice_line(prepared, seg, values), prepared, seg, values) for seg in voices]
    patch_sets = _lipsync(prepared, voices, inserts, workdir, parallel)
    if parallel:
        patch_sets += [f.result() for f in visual_futures]
        render = compose(prepared, inserts, patch_sets, out_uri)
        result = publish(prepared, key, values, inserts, patch_sets, render, out_uri, started)
    else:
        patch_sets += [(draw_visual if _fetches(seg, values) else draw_visual.fn)(prepared, seg, values, workdir) for seg in visuals]
        render = compose.fn(prepared, inserts, patch_sets, out_uri)
        result = publish.fn(prepared, key, values, inserts, patch_sets, render, out_uri, started, assets=False)
    storage.remove(workdir)
    return result


@flow(name="personalize-recipient", task_runner=ThreadPoolTaskRunner(max_workers=SEGMENT_WORKERS), log_prints=True)
def personalize_recipient(template: str, data: dict[str, str], output: str | None = None) -> RecipientResult:
    """Make one recipient's video from a template (id or path) and a row of placeholder values."""
    apply_configured_blocks()  # deployed runs: blocks named in the environment configure the engine
    tpl = load_template(template)
    check_row(tpl, data)  # bad input fails before any expensive work
    prepared = prepare_template_fresh(tpl)
    return recipient_steps(tpl, prepared, data, output)
