"""The lip-sync blocks hand the engine plain settings and keep secrets masked."""

from __future__ import annotations

import pytest

from blocks.synclabs import SyncLabsCredentials
from blocks.wav2lip import Wav2LipModel
from loom.settings import get_settings, reload_settings


def test_wav2lip_block_sets_the_engine_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOOM_WAV2LIP_CHECKPOINT", "LOOM_WAV2LIP_DEVICE", "LOOM_WAV2LIP_BATCH_SIZE", "LOOM_FACE_MODEL", "LOOM_LIPSYNC_BACKEND"):
        monkeypatch.setenv(name, "placeholder")  # recorded, so undo() restores the environment as it was
    try:
        Wav2LipModel(
            checkpoint="gs://models/wav2lip_gan.pth", device="cuda", batch_size=64, face_model="/m/yunet.onnx", backend="synclabs"
        ).apply()
        settings = get_settings()
        assert settings.lipsync_backend == "synclabs"  # the block picks the backend too
        assert settings.wav2lip_checkpoint == "gs://models/wav2lip_gan.pth"
        assert (settings.wav2lip_device, settings.wav2lip_batch_size, settings.face_model) == ("cuda", 64, "/m/yunet.onnx")
    finally:
        monkeypatch.undo()
        reload_settings()
    with pytest.raises(ValueError):
        Wav2LipModel(checkpoint="x.pth", batch_size=0)


def test_synclabs_block_masks_the_key_and_builds_a_client(monkeypatch: pytest.MonkeyPatch) -> None:
    block = SyncLabsCredentials(api_key="sk-secret", model="lipsync-2-pro", base_url="http://127.0.0.1:9")
    assert "sk-secret" not in repr(block)
    client = block.client()
    assert client.settings.model == "lipsync-2-pro" and client.settings.api_key.get_secret_value() == "sk-secret"
    client.close()
    names = ("SYNC_API_KEY", "SYNC_BASE_URL", "SYNC_MODEL", "SYNC_SYNC_MODE", "SYNC_POLL_SECONDS", "SYNC_TIMEOUT_SECONDS")
    for name in names:  # recorded by monkeypatch, so the test leaves the environment as it found it
        monkeypatch.setenv(name, "placeholder")
    block.apply()
    import os

    assert os.environ["SYNC_API_KEY"] == "sk-secret" and os.environ["SYNC_MODEL"] == "lipsync-2-pro"
    from loom.lipsync.synclabs import SyncLabsSettings

    assert SyncLabsSettings().base_url == "http://127.0.0.1:9"
