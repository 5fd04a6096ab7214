"""What one recipient changes in the recording, passed between steps as small objects.

Steps hand each other URIs of files and these models, never frames or audio bytes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class AudioInsert(BaseModel):
    """New audio for one voice window: a WAV that covers exactly [start, end) of the timeline.

    The renderer replaces the original samples of that window with the WAV's, with equal-power
    crossfades at both edges.
    """

    segment_id: str
    uri: str = Field(description="WAV covering the whole window (speech placed inside, room tone around it)")
    start: float = Field(description="window start in seconds on the recording's timeline")
    end: float = Field(description="window end in seconds")
    sample_rate: int
    speech_start: float = Field(0.0, description="seconds into the window where speech begins")
    speech_end: float = Field(0.0, description="seconds into the window where speech ends")
    stretch: float = Field(1.0, description="time-stretch factor applied (1 = none)")
    loudness_lufs: float | None = Field(None, description="integrated loudness of the new speech")
    target_lufs: float | None = Field(None, description="loudness of the original speech it matches")
    text: str = ""
    spoken_text: str = ""
    speech_cache_key: str = ""
    provider: str = ""


class PatchSetRef(BaseModel):
    """A file of per-frame RGBA patches for one segment (see ``loom.media.patches``)."""

    segment_id: str
    kind: Literal["lipsync", "visual"]
    uri: str
    first_frame: int
    stop_frame: int = Field(description="one past the last frame the patches may touch")
    frames_patched: int = 0
    qa: dict[str, object] = Field(default_factory=dict)
