"""ElevenLabs credentials and speech options as a Prefect block.

The engine never sees the block: ``voice_config()`` turns it into the plain ``VoiceConfig`` the
engine takes, and ``apply()`` hands its typed ``ElevenLabsConfig`` to the engine for this process
(``loom.voice.config.use_elevenlabs``; nothing is written to the environment). The key stays a ``SecretStr``: masked in
the UI, in ``repr`` and in logs.
"""

from __future__ import annotations

import os

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from loom.settings import configure
from loom.voice.config import (
    DEFAULT_BASE_URL,
    ElevenLabsConfig,
    VoiceConfig,
    VoiceSettings,
    use_elevenlabs,
)

ELEVENLABS_BLOCK_ENV = "LOOM_ELEVENLABS_BLOCK"
DEFAULT_ELEVENLABS_BLOCK = "elevenlabs"


class ElevenLabsCredentials(Block):
    """An ElevenLabs account (API key) and how lines are spoken with it."""

    _block_type_name = "ElevenLabs Credentials"
    _description = "API key, model and voice settings for better-loom's cloned-voice speech."

    api_key: SecretStr = Field(description="ElevenLabs API key (sent as xi-api-key; never shown).")
    model_id: str = Field(default="eleven_multilingual_v2", description="Text-to-speech model.")
    base_url: str = Field(default=DEFAULT_BASE_URL, description="API root, or a proxy that stands in for it.")
    output_format: str = Field(default="pcm_24000", pattern=r"^(pcm|wav|mp3|opus)_\d+(_\d+)?$", description="pcm_<rate> (lossless) or wav/mp3/opus.")
    stability: float = Field(default=0.5, ge=0, le=1, description="Lower is more expressive, higher more even.")
    similarity_boost: float = Field(default=0.75, ge=0, le=1, description="How closely to keep the cloned voice.")
    style: float = Field(default=0.0, ge=0, le=1, description="Style exaggeration (0 keeps the presenter's).")
    use_speaker_boost: bool = Field(default=True, description="Boost similarity to the original speaker.")
    speed: float = Field(default=1.0, ge=0.7, le=1.2, description="Speaking rate the service applies.")
    timeout_s: float = Field(default=60.0, gt=0, le=600, description="Per-request timeout in seconds.")
    max_attempts: int = Field(default=5, ge=1, le=10, description="Tries per request on 429/5xx, counting the first.")
    concurrency: int | None = Field(
        default=None, ge=1, le=1000,
        description="Requests in flight at once for this account, across every run and worker (the plan's "
        "concurrency); sizes the `elevenlabs` global concurrency limit. Unset: LOOM_TTS_CONCURRENCY.",
    )

    def elevenlabs_config(self) -> ElevenLabsConfig:
        return ElevenLabsConfig(
            api_key=self.api_key,
            model_id=self.model_id,
            base_url=self.base_url,
            output_format=self.output_format,
            voice_settings=VoiceSettings(
                stability=self.stability,
                similarity_boost=self.similarity_boost,
                style=self.style,
                use_speaker_boost=self.use_speaker_boost,
                speed=self.speed,
            ),
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
        )

    def voice_config(self) -> VoiceConfig:
        """The plain config ``loom.voice.speech.synthesize_line`` takes."""
        return VoiceConfig(elevenlabs=self.elevenlabs_config())

    def apply(self) -> None:
        """Hand this account to the engine in this process (over ``ELEVENLABS_*``; the environment is
        not touched); its ``concurrency``, when set, sizes the provider's slots."""
        use_elevenlabs(self.elevenlabs_config())
        if self.concurrency is not None:
            configure(tts_concurrency=self.concurrency)


def apply_elevenlabs_block() -> bool:
    """In a deployed run, load the block named by ``LOOM_ELEVENLABS_BLOCK`` (if set) and apply it."""
    name = os.environ.get(ELEVENLABS_BLOCK_ENV)
    if not name:
        return False
    ElevenLabsCredentials.load(name).apply()
    return True
