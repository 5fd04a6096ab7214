"""The one small interface every speech provider meets, and the choice between them."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from loom.voice.clip import SpokenAudio
from loom.voice.config import VoiceConfig

log = logging.getLogger("loom.voice")


class SpeechProvider(Protocol):
    name: str

    def identity(self, voice_id: str) -> tuple[str, str, dict[str, object]]:
        """(voice, model, settings) that decide the audio, for the cache key."""
        ...

    def speak(self, text: str, voice_id: str) -> SpokenAudio:
        """Synthesize ``text`` (one request at most)."""
        ...


class OfflineProvider:
    """espeak-ng from its wheel; the template's voice id means nothing to it."""

    name = "espeak"

    def __init__(self, config: VoiceConfig) -> None:
        self.voice = config.offline_voice
        self.words_per_minute = config.offline_words_per_minute
        self.pitch = config.offline_pitch

    def identity(self, voice_id: str) -> tuple[str, str, dict[str, object]]:
        return self.voice, "espeak-ng", {"wpm": self.words_per_minute, "pitch": self.pitch}

    def speak(self, text: str, voice_id: str) -> SpokenAudio:
        from loom.voice.offline import speak_offline  # loads libespeak-ng: only when the offline voice speaks

        return speak_offline(text, self.voice, self.words_per_minute, self.pitch)


_announced = False
_announce_lock = threading.Lock()


def _announce_offline() -> None:
    global _announced
    with _announce_lock:
        if _announced:
            return
        _announced = True
    log.warning(
        "no ElevenLabs key: speaking with the offline voice (espeak-ng), not the presenter's; "
        "set ELEVENLABS_API_KEY for the cloned voice"
    )


def choose_provider(config: VoiceConfig) -> SpeechProvider:
    """ElevenLabs when a key is configured, else the offline voice (said once per process)."""
    if config.uses_elevenlabs:
        from loom.voice.elevenlabs import ElevenLabsProvider  # the ElevenLabs SDK (~0.3 s): only with a key

        assert config.elevenlabs is not None
        return ElevenLabsProvider(config.elevenlabs)
    _announce_offline()
    return OfflineProvider(config)
