"""A recipient's steps as Prefect tasks, for ``loom.pipeline.run_recipient`` in a flow run.

``parallel`` (a recipient's own flow run): every step is a task, voice and visual tasks submitted
at once. Otherwise (a campaign row, itself a task, beside other rows): the steps that call a
network (voice, lip-sync, fetched logos) stay tasks for their retries and caches; the local ones
(drawing, compose, publish) run as plain calls of the same task functions (``.fn``), and the
lineage assets are left to the campaign, which records them for all its rows at once. On the
local SQLite server each task run is several writes: a sheet of rows times eight task runs kept
it busy (and locked) long after the campaign returned.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Generic, TypeVar

from loom import pipeline, storage
from loom.edits import AudioInsert, PatchSetRef
from loom.pipeline import Done, Pending, RecipientJob, RecipientResult
from loom.settings import get_settings
from loom.template import VisualSegment, VoiceSegment
from tasks.compose import compose
from tasks.lipsync import lipsync_line, lipsync_on_pool
from tasks.publish import publish
from tasks.visual import draw_visual
from tasks.voice import remade_if_missing, voice_line

T = TypeVar("T")


class Later(Generic[T]):
    """A result computed from another when first asked for (then kept)."""

    def __init__(self, make: Callable[[], T]) -> None:
        self.result = cache(make)


def gpu_pool_configured() -> bool:
    return bool(get_settings().gpu_pool)


def _fetches(segment: VisualSegment, values: dict[str, str]) -> bool:
    """Whether drawing this segment reads its value over a network (an image at gs:// or https://)."""
    key = segment.placeholder_key
    return segment.segment_type == "image" and key is not None and storage.is_remote(values.get(key, ""))


class TaskSteps:
    """The steps of ``pipeline.RecipientSteps`` as tasks of the current flow run."""

    def __init__(self, parallel: bool = True, spoken: bool = False) -> None:
        self.parallel = parallel
        # A campaign's speech stage already spoke the lines into the speech cache: fitting them is
        # local work, a plain call (no task run, no request).
        self.spoken = spoken

    def lipsync_available(self, job: RecipientJob) -> bool:
        # a GPU pool serves the wav2lip deployment with its own configuration
        return gpu_pool_configured() or pipeline.lipsync_backend_ready()

    def voice(self, job: RecipientJob, segment: VoiceSegment) -> Pending[AudioInsert]:
        if self.spoken:
            return Done(voice_line.fn(job.prepared, segment, job.values))
        if not self.parallel:
            return Done(remade_if_missing(voice_line(job.prepared, segment, job.values), job.prepared, segment, job.values))
        future = voice_line.submit(job.prepared, segment, job.values)
        return Later(lambda: remade_if_missing(future.result(), job.prepared, segment, job.values))

    def draw(self, job: RecipientJob, segment: VisualSegment) -> Pending[PatchSetRef]:
        if self.parallel:
            return draw_visual.submit(job.prepared, segment, job.values, job.workdir)
        step = draw_visual if _fetches(segment, job.values) else draw_visual.fn
        return Done(step(job.prepared, segment, job.values, job.workdir))

    def lipsync(self, job: RecipientJob, segment: VoiceSegment, voice: Pending[AudioInsert]) -> Pending[PatchSetRef | None]:
        step = lipsync_on_pool if gpu_pool_configured() else lipsync_line
        if self.parallel:
            return step.submit(job.prepared, segment, voice.result(), job.workdir)
        return Done(step(job.prepared, segment, voice.result(), job.workdir))

    def compose(self, job: RecipientJob, voices: list[Pending[AudioInsert]], patch_sets: list[PatchSetRef]) -> dict[str, object]:
        step = compose if self.parallel else compose.fn
        return step(job.prepared, [v.result() for v in voices], patch_sets, job.output_uri)

    def publish(
        self, job: RecipientJob, inserts: list[AudioInsert], patch_sets: list[PatchSetRef], render: dict[str, object]
    ) -> RecipientResult:
        args = (job.prepared, job.key, job.values, inserts, patch_sets, render, job.output_uri, job.started)
        return publish(*args) if self.parallel else publish.fn(*args, assets=False)
