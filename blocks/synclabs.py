"""Sync Labs credentials and generation options as a Prefect block.

``client()`` hands out a ready ``loom.lipsync.synclabs.SyncLabsClient``; ``apply()`` hands its
typed settings to the engine for this process (``use_synclabs``, over ``SYNC_*``; nothing is
written to the environment). The key is a
``SecretStr``: masked in the UI, in ``repr`` and in logs.
"""

from __future__ import annotations

import os

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from loom.lipsync.synclabs import SyncLabsClient, SyncLabsSettings, use_synclabs

SYNCLABS_BLOCK_ENV = "LOOM_SYNCLABS_BLOCK"
DEFAULT_SYNCLABS_BLOCK = "synclabs"


class SyncLabsCredentials(Block):
    """A Sync Labs (sync.so) account and the model its lip-sync runs with."""

    _block_type_name = "Sync Labs Credentials"
    _description = "API key and options for better-loom's hosted lip-sync backend (sync.so API v2)."

    api_key: SecretStr = Field(description="Sync Labs API key (sent as x-api-key; never shown).")
    base_url: str = Field(default="https://api.sync.so", description="API root without /v2, or a proxy for it.")
    model: str = Field(default="lipsync-2", description="sync-3, lipsync-2, lipsync-2-pro, lipsync-1.9.0-beta, ...")
    sync_mode: str = Field(default="cut_off", description="When audio and video lengths differ: cut_off, loop, bounce, ...")
    poll_seconds: float = Field(default=5.0, gt=0, le=60, description="Seconds between status checks.")
    timeout_seconds: float = Field(default=1800.0, gt=0, description="Give up on one generation after this long.")

    def settings(self) -> SyncLabsSettings:
        return SyncLabsSettings(
            api_key=self.api_key,
            base_url=self.base_url,
            model=self.model,
            sync_mode=self.sync_mode,
            poll_seconds=self.poll_seconds,
            timeout_seconds=self.timeout_seconds,
        )

    def client(self) -> SyncLabsClient:
        return SyncLabsClient(self.settings())

    def apply(self) -> None:
        """Hand this account to the engine in this process (over ``SYNC_*``; the environment is not touched)."""
        use_synclabs(self.settings())


def apply_synclabs_block() -> bool:
    """In a deployed run, load the block named by ``LOOM_SYNCLABS_BLOCK`` (if set) and apply it."""
    name = os.environ.get(SYNCLABS_BLOCK_ENV)
    if not name:
        return False
    SyncLabsCredentials.load(name).apply()
    return True
