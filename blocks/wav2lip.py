"""The local lip-sync model's configuration as a Prefect block (the GPU pool's ``wav2lip`` runs).

The engine never sees the block: ``apply()`` hands its values to the engine's settings for this
process (``loom.settings.configure``, over ``LOOM_WAV2LIP_*`` / ``LOOM_FACE_MODEL``; nothing is
written to the environment), as ``LoomStorage.apply`` does for the home.
"""

from __future__ import annotations

import os
from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field

from loom.settings import configure

WAV2LIP_BLOCK_ENV = "LOOM_WAV2LIP_BLOCK"
DEFAULT_WAV2LIP_BLOCK = "wav2lip"


class Wav2LipModel(Block):
    """Which Wav2Lip checkpoint to run, where, and how many frames at a time."""

    _block_type_name = "Wav2Lip Model"
    _description = (
        "Checkpoint and device for better-loom's local lip-sync. The official wav2lip.pth / wav2lip_gan.pth "
        "(github.com/Rudrabha/Wav2Lip) are for research, academic and personal use only."
    )

    checkpoint: str = Field(description="wav2lip.pth or wav2lip_gan.pth: a local path or gs://bucket/path.")
    device: Literal["auto", "cuda", "cpu"] = Field(default="auto", description="auto picks CUDA when present.")
    batch_size: int = Field(default=128, ge=1, le=1024, description="Frames per forward pass (the original uses 128).")
    face_model: str | None = Field(
        default=None, description="YuNet ONNX file for the stronger face detector; Haar cascades when empty."
    )
    backend: str = Field(
        default="wav2lip", description="Lip-sync backend: wav2lip, synclabs or an installed plugin's name (`loom plugins`)."
    )

    def apply(self) -> None:
        """Make this the engine's lip-sync configuration in this process (over ``LOOM_WAV2LIP_*``;
        the environment is not touched)."""

        configure(
            wav2lip_checkpoint=self.checkpoint,
            wav2lip_device=self.device,
            wav2lip_batch_size=self.batch_size,
            face_model=self.face_model,
            lipsync_backend=self.backend,
        )


def apply_wav2lip_block() -> bool:
    """In a deployed run, load the block named by ``LOOM_WAV2LIP_BLOCK`` (if set) and apply it."""
    name = os.environ.get(WAV2LIP_BLOCK_ENV)
    if not name:
        return False
    Wav2LipModel.load(name).apply()
    return True
