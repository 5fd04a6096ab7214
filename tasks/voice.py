"""Speak and fit one voice line; cached by the engine's line key, so a line is paid for once.
The fitted WAV is kept under the prepared template (``pipeline.line_dir``), not in the recipient's
scratch folder, so a cached result keeps pointing at a file that still exists and recipients
whose line reads the same share it.
"""

from __future__ import annotations

from typing import Any

from prefect import task

from loom import pipeline, storage
from loom.edits import AudioInsert
from loom.prepared import PreparedTemplate
from loom.template import VoiceSegment
from tasks.caching import ContentKey
from tasks.retries import network_retry_options


def _line_key(inputs: dict[str, Any]) -> str:
    return pipeline.line_key(inputs["prepared"], inputs["segment"], inputs["values"])


VOICE_CACHE = ContentKey(content=_line_key, name="voice-line")


@task(name="voice-line", cache_policy=VOICE_CACHE, persist_result=True, **network_retry_options())
def voice_line(prepared: PreparedTemplate, segment: VoiceSegment, values: dict[str, str]) -> AudioInsert:
    """Speech for the recipient's line fitted into the segment's window (``pipeline.voice_line``)."""
    return pipeline.voice_line(prepared, segment, values)


def remade_if_missing(insert: AudioInsert, prepared: PreparedTemplate, segment: VoiceSegment, values: dict[str, str]) -> AudioInsert:
    """A cached result is only good while its WAV is still in storage; otherwise make it again."""
    if storage.exists(insert.uri):
        return insert
    return voice_line.with_options(refresh_cache=True)(prepared, segment, values)
