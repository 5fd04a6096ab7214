"""A spoken line as it travels between steps: a WAV in storage plus what made it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, Field


class Alignment(BaseModel):
    """When each character of the spoken text is heard, in seconds from the clip's start.

    ElevenLabs gives it per character; the offline voice per word (each character of a word gets
    the word's span).
    """

    characters: list[str] = Field(default_factory=list)
    starts: list[float] = Field(default_factory=list)
    ends: list[float] = Field(default_factory=list)


class SpeechClip(BaseModel):
    """A line spoken by a provider, stored as a mono WAV at ``sample_rate``."""

    uri: str
    sample_rate: int
    provider: str = Field(description="'elevenlabs' or 'espeak'")
    voice_id: str = ""
    text: str = Field("", description="the text that was spoken")
    cache_key: str
    cached: bool = Field(False, description="True when the clip came from the cache (no request made)")
    duration: float = 0.0
    alignment: Alignment | None = None


@dataclass
class SpokenAudio:
    """What a provider hands back: mono float32 samples in [-1, 1] and optional timing."""

    samples: np.ndarray
    sample_rate: int
    alignment: Alignment | None = None
    meta: dict[str, str] = field(default_factory=dict)
