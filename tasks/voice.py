"""Speak and fit one voice line; cached by the engine's speech cache key, so a line is paid for once.

The fitted WAV is written under the prepared template (``voice/<segment>/<line key>/``), not in the
recipient's scratch folder, so a cached result keeps pointing at a file that still exists and
recipients whose line reads the same share it.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.utilities.hashing import hash_objects

from loom import pipeline, storage
from loom.edits import AudioInsert
from loom.prepared import PreparedTemplate
from loom.recipients import render_line
from loom.template import VoiceSegment
from loom.voice.speech import speech_cache_key
from tasks.caching import ContentKey
from tasks.retries import network_retry_options


def line_key(prepared: PreparedTemplate, segment: VoiceSegment, values: dict[str, str]) -> str:
    """What decides a fitted line: the prepared template, the window, the written text and the speech
    (the engine's speech cache key: provider, voice, model, settings and spoken text)."""
    text, spoken = render_line(segment.template_text, values)
    speech = speech_cache_key(spoken, prepared.template.voice_id)
    return hash_objects(prepared.version, segment.model_dump(mode="json"), text, speech) or ""


def line_dir(prepared: PreparedTemplate, segment: VoiceSegment, values: dict[str, str]) -> str:
    return storage.join(prepared.root, "voice", segment.id, line_key(prepared, segment, values)[:24])


def _line_key(inputs: dict[str, Any]) -> str:
    return line_key(inputs["prepared"], inputs["segment"], inputs["values"])


VOICE_CACHE = ContentKey(content=_line_key, name="voice-line")


@task(name="voice-line", cache_policy=VOICE_CACHE, persist_result=True, **network_retry_options())
def voice_line(prepared: PreparedTemplate, segment: VoiceSegment, values: dict[str, str]) -> AudioInsert:
    """Speech for the recipient's line fitted into the segment's window (``pipeline.voice_line``)."""
    return pipeline.voice_line(prepared, segment, values, line_dir(prepared, segment, values))


def remade_if_missing(insert: AudioInsert, prepared: PreparedTemplate, segment: VoiceSegment, values: dict[str, str]) -> AudioInsert:
    """A cached result is only good while its WAV is still in storage; otherwise make it again."""
    if storage.exists(insert.uri):
        return insert
    return voice_line.with_options(refresh_cache=True)(prepared, segment, values)
