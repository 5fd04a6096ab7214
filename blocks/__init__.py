"""Prefect blocks: credentials and model/storage configuration (``prefect block register -m blocks``).

Registration finds every Block class in this module's namespace, so each one is imported here.
In a deployed run, ``apply_configured_blocks`` loads the blocks the environment names
(``LOOM_STORAGE_BLOCK``, ``LOOM_ELEVENLABS_BLOCK``, ``LOOM_WAV2LIP_BLOCK``, ``LOOM_SYNCLABS_BLOCK``)
and hands their settings to the engine; with none named, the environment's ``LOOM_*`` /
``ELEVENLABS_*`` settings stand.
"""

from __future__ import annotations

from blocks.elevenlabs import ElevenLabsCredentials, apply_elevenlabs_block
from blocks.storage import LoomStorage, apply_storage_block
from blocks.synclabs import SyncLabsCredentials, apply_synclabs_block
from blocks.wav2lip import Wav2LipModel, apply_wav2lip_block

__all__ = [
    "ElevenLabsCredentials",
    "LoomStorage",
    "SyncLabsCredentials",
    "Wav2LipModel",
    "apply_configured_blocks",
]


def apply_configured_blocks() -> list[str]:
    """Apply every block the environment names; returns which kinds were applied."""
    applied = []
    for kind, apply in (
        ("storage", apply_storage_block),
        ("elevenlabs", apply_elevenlabs_block),
        ("wav2lip", apply_wav2lip_block),
        ("synclabs", apply_synclabs_block),
    ):
        if apply():
            applied.append(kind)
    return applied
