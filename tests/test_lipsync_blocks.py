"""The lip-sync blocks hand the engine plain settings and keep secrets masked."""

from __future__ import annotations

import os

import pytest

from blocks.synclabs import SyncLabsCredentials
from blocks.wav2lip import Wav2LipModel
from loom.errors import InputError
from loom.lipsync.synclabs import SyncLabsClient, use_synclabs
from loom.settings import forget_configured, get_settings, reload_settings


def test_wav2lip_block_sets_the_engine_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_WAV2LIP_CHECKPOINT", "from-the-environment.pth")
    reload_settings()
    before = dict(os.environ)
    try:
        Wav2LipModel(
            checkpoint="gs://models/wav2lip_gan.pth", device="cuda", batch_size=64, face_model="/m/yunet.onnx", backend="synclabs"
        ).apply()
        assert dict(os.environ) == before  # handed over typed, not through the environment
        settings = get_settings()
        assert settings.lipsync_backend == "synclabs"  # the block picks the backend too
        assert settings.wav2lip_checkpoint == "gs://models/wav2lip_gan.pth"  # over the environment's
        assert (settings.wav2lip_device, settings.wav2lip_batch_size, settings.face_model) == ("cuda", 64, "/m/yunet.onnx")
    finally:
        forget_configured()
        monkeypatch.undo()
        reload_settings()
    assert get_settings().wav2lip_checkpoint is None
    with pytest.raises(ValueError):
        Wav2LipModel(checkpoint="x.pth", batch_size=0)


def test_synclabs_block_masks_the_key_and_builds_a_client(monkeypatch: pytest.MonkeyPatch) -> None:
    block = SyncLabsCredentials(api_key="sk-secret", model="lipsync-2-pro", base_url="http://127.0.0.1:9")
    assert "sk-secret" not in repr(block)
    client = block.client()
    assert client.settings.model == "lipsync-2-pro" and client.settings.api_key.get_secret_value() == "sk-secret"
    client.close()
    before = dict(os.environ)
    block.apply()
    try:
        assert dict(os.environ) == before  # handed over typed, not through the environment
        client = SyncLabsClient()  # what the engine builds when none is passed
        assert client.settings.api_key.get_secret_value() == "sk-secret" and client.settings.model == "lipsync-2-pro"
        assert client.settings.base_url == "http://127.0.0.1:9"
        client.close()
    finally:
        use_synclabs(None)
    monkeypatch.delenv("SYNC_API_KEY", raising=False)
    with pytest.raises(InputError, match="SYNC_API_KEY"):
        SyncLabsClient()
