"""How speech is made: the ElevenLabs account and model, or the offline voice.

A plain pydantic config, read from the environment (``ELEVENLABS_*``) when not given. A Prefect
block in ``blocks/`` produces the same object in deployed runs; the engine never sees the block.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BASE_URL = "https://api.elevenlabs.io"


class VoiceSettings(BaseModel):
    """ElevenLabs voice settings sent with every request (they change the audio, so they key the cache)."""

    stability: float = Field(0.5, ge=0, le=1)
    similarity_boost: float = Field(0.75, ge=0, le=1)
    style: float = Field(0.0, ge=0, le=1)
    use_speaker_boost: bool = True
    speed: float = Field(1.0, ge=0.7, le=1.2, description="speaking rate the service applies before we fit")


class ElevenLabsConfig(BaseSettings):
    """The ElevenLabs account and request options; every field can be set as ``ELEVENLABS_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="ELEVENLABS_", env_nested_delimiter="__", extra="ignore")

    api_key: SecretStr | None = Field(default=None, description="xi-api-key; never printed")
    base_url: str = Field(default=DEFAULT_BASE_URL, description="the API root, or a proxy / test server standing in")
    model_id: str = Field(default="eleven_multilingual_v2")
    output_format: str = Field(
        default="pcm_24000",
        pattern=r"^(pcm|wav|mp3|opus)_\d+(_\d+)?$",
        description="pcm_<rate> (raw 16-bit mono; lossless, the default) or wav/mp3/opus; 44.1 kHz PCM needs a Pro plan",
    )
    voice_settings: VoiceSettings = Field(default_factory=VoiceSettings)
    timeout_s: float = Field(default=60.0, gt=0, le=600, description="per request")
    max_attempts: int = Field(default=5, ge=1, le=10, description="tries per request, counting the first")
    max_backoff_s: float = Field(default=30.0, gt=0, description="longest wait between tries, Retry-After included")

    @field_validator("api_key", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # An exported-but-empty ELEVENLABS_API_KEY means "no key", not an empty key to send.
        if isinstance(value, str) and not value.strip():
            return None
        return value


class VoiceConfig(BaseModel):
    """Which provider speaks, and how. ``elevenlabs`` set (with a key) means ElevenLabs; else offline."""

    elevenlabs: ElevenLabsConfig | None = None
    offline_voice: str = Field(default="en-us", description="espeak-ng voice name for the offline voice")
    offline_words_per_minute: int = Field(default=165, ge=80, le=450)
    offline_pitch: int = Field(default=50, ge=0, le=99)

    @property
    def uses_elevenlabs(self) -> bool:
        return self.elevenlabs is not None and self.elevenlabs.api_key is not None


# ElevenLabs settings handed to the engine by its caller (the ElevenLabs block in a deployed run).
_configured: list[ElevenLabsConfig] = []


def use_elevenlabs(config: ElevenLabsConfig | None) -> None:
    """Speak with ``config`` in this process instead of the ``ELEVENLABS_*`` environment (None: the
    environment again)."""
    _configured[:] = [config] if config is not None else []


def configured_elevenlabs() -> ElevenLabsConfig:
    """The ElevenLabs settings in force: the caller's, else the environment's (re-read each call)."""
    return _configured[0] if _configured else ElevenLabsConfig()


def voice_config_from_env() -> VoiceConfig:
    """The config in force: what the caller handed over, else what the environment describes."""
    eleven = configured_elevenlabs()
    return VoiceConfig(elevenlabs=eleven if eleven.api_key is not None else None)
