"""Speak a line: from the cache if it was ever said before, else from the configured provider."""

from __future__ import annotations

from loom import costs
from loom.errors import InputError
from loom.voice.cache import load_cached_clip, speech_key, store_clip
from loom.voice.clip import SpeechClip
from loom.voice.config import VoiceConfig, voice_config_from_env
from loom.voice.provider import SpeechProvider, choose_provider
from loom.voice.wav import wav_bytes


def spoken_form(text: str) -> str:
    """The text as sent to the voice: runs of whitespace are one space (they never change speech)."""
    return " ".join(text.split())


def _key(provider: SpeechProvider, text: str, voice_id: str) -> str:
    voice, model, settings = provider.identity(voice_id)
    return speech_key(provider.name, voice, model, settings, spoken_form(text))


def speech_cache_key(text: str, voice_id: str, config: VoiceConfig | None = None) -> str:
    """The key ``synthesize_line`` stores this line under (for the flows' Prefect cache policy)."""
    provider = choose_provider(config or voice_config_from_env())
    return _key(provider, text, voice_id)


def synthesize_line(text: str, voice_id: str, config: VoiceConfig | None = None) -> SpeechClip:
    """A WAV of ``text`` in the voice; a line said before (same provider, voice, model, settings,
    text) comes from the cache and makes no request."""
    spoken = spoken_form(text)
    if not spoken:
        raise InputError("template_text", "the line to speak is empty", "give the voice segment some words")
    config = config or voice_config_from_env()
    provider = choose_provider(config)
    if provider.name != "espeak" and not voice_id:
        raise InputError("voice_id", "the template has no voice id", "clone one with `loom clone-voice` and set voice_id")
    key = _key(provider, spoken, voice_id)
    cached = load_cached_clip(key)
    if cached is not None:
        return cached
    audio = provider.speak(spoken, voice_id)
    costs.characters_sent(provider.name, len(spoken))  # a cache hit above sends nothing
    return store_clip(
        key,
        wav_bytes(audio.samples, audio.sample_rate),
        sample_rate=audio.sample_rate,
        provider=provider.name,
        voice_id=voice_id,
        text=spoken,
        duration=len(audio.samples) / audio.sample_rate,
        alignment=audio.alignment,
    )


def clone_voice(name: str, files: list[str], **options: object) -> str:
    """Clone the presenter's voice on ElevenLabs from ``files``; returns the new voice id.

    See ``loom.voice.cloning.clone_voice`` (imported here lazily: the SDK loads only when cloning).
    """
    from loom.voice import cloning

    return cloning.clone_voice(name, files, **options)  # type: ignore[arg-type]
