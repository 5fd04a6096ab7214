"""Speech is paid for once: clips are stored under the home by a key of everything that shapes them.

The key covers provider, voice, model, voice settings, output format and the exact spoken text, so a
line reused across recipients, runs, the CLI and the Prefect flows (whose cache policy uses the same
key) is synthesized once. Clips live in ``<home>/speech/<key>.wav`` beside a small JSON record, so a
``gs://`` home shares them between machines.
"""

from __future__ import annotations

import hashlib
import json

from loom import storage
from loom.voice.clip import Alignment, SpeechClip

CACHE_FORMAT = "1"  # bump when the stored audio changes meaning


def speech_key(provider: str, voice_id: str, model_id: str, settings: dict[str, object], text: str) -> str:
    """sha256 of what decides the audio; the same inputs give the same key in every process."""
    payload = json.dumps(
        {
            "format": CACHE_FORMAT,
            "provider": provider,
            "voice": voice_id,
            "model": model_id,
            "settings": settings,
            "text": text,
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def speech_dir() -> str:
    return storage.join(storage.home(), "speech")


def cached_clip_uri(key: str) -> str:
    return storage.join(speech_dir(), f"{key}.wav")


def _record_uri(key: str) -> str:
    return storage.join(speech_dir(), f"{key}.json")


def load_cached_clip(key: str) -> SpeechClip | None:
    """The stored clip for ``key``, or None. The WAV is written first, so its record means it is whole."""
    record = _record_uri(key)
    if not storage.exists(record):
        return None
    clip = SpeechClip.model_validate_json(storage.read_bytes(record))
    uri = cached_clip_uri(key)  # where it lies now, should the home have been moved
    if not storage.exists(uri):
        return None
    return clip.model_copy(update={"uri": uri, "cached": True})


def store_clip(
    key: str,
    wav: bytes,
    *,
    sample_rate: int,
    provider: str,
    voice_id: str,
    text: str,
    duration: float,
    alignment: Alignment | None,
) -> SpeechClip:
    uri = cached_clip_uri(key)
    storage.write_bytes(uri, wav)
    clip = SpeechClip(
        uri=uri,
        sample_rate=sample_rate,
        provider=provider,
        voice_id=voice_id,
        text=text,
        cache_key=key,
        cached=False,
        duration=duration,
        alignment=alignment,
    )
    storage.write_text(_record_uri(key), clip.model_dump_json())
    return clip
