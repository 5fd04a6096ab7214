"""A template made ready once per version: working video, original audio, tracks and faces.

Everything here is recipient-independent and costs once per template version; recipients only
read it. It is stored as JSON beside its files under ``$LOOM_HOME/prepared/<version>/``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from loom.media.concealment import Concealment
from loom.media.probe import VideoInfo
from loom.template import Template


class PreparedTemplate(BaseModel):
    template: Template
    version: str = Field(description="hash of the base video's content, the template and the prepare code")
    root: str = Field(description="folder (or gs:// prefix) holding this prepared template's files")
    source: VideoInfo = Field(description="the recording as uploaded")
    video: VideoInfo = Field(description="the working video: the source itself if kept, else the mezzanine")
    working_video_uri: str
    mezzanine: bool = False
    mezzanine_reason: str | None = None
    audio_uri: str = Field(description="the original audio decoded once to WAV (silence if the source had none)")
    audio_sample_rate: int = 48000
    audio_channels: int = 2
    tracks: dict[str, str] = Field(default_factory=dict, description="visual segment id -> track JSON URI")
    clean_plates: dict[str, str] = Field(
        default_factory=dict, description="visual segment id -> clean plate .npz URI (the original removed, per frame)"
    )
    faces: dict[str, str] = Field(default_factory=dict, description="voice segment id -> face track JSON URI")
    qa: list[str] = Field(default_factory=list, description="warnings found while preparing")
    concealed: list[Concealment] = Field(
        default_factory=list, description="what decoding the damaged recording skipped (stream, time, count)"
    )

    def segment_frames(self, start: float, end: float) -> tuple[int, int]:
        return self.video.frame_span(start, end)
