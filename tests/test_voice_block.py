"""The ElevenLabs Prefect block produces the engine's plain config; the key stays masked."""

from __future__ import annotations

import os

import pytest

from blocks.elevenlabs import ElevenLabsCredentials
from loom.voice.config import voice_config_from_env

KEY = "sk_block_secret_42"


NAMES = [f"ELEVENLABS_{n}" for n in ("API_KEY", "BASE_URL", "MODEL_ID", "OUTPUT_FORMAT", "TIMEOUT_S", "MAX_ATTEMPTS", "VOICE_SETTINGS")]


@pytest.fixture
def clean_env():
    """No ELEVENLABS_* before; whatever ``apply`` exported is removed after (it writes os.environ)."""
    saved = {name: os.environ.pop(name) for name in NAMES if name in os.environ}
    yield
    for name in NAMES:
        os.environ.pop(name, None)
    os.environ.update(saved)


def test_block_gives_the_engine_config_and_hides_the_key(clean_env):
    block = ElevenLabsCredentials(api_key=KEY, model_id="eleven_turbo_v2_5", stability=0.3, base_url="http://127.0.0.1:9")
    config = block.voice_config()
    assert config.uses_elevenlabs and config.elevenlabs.model_id == "eleven_turbo_v2_5"
    assert config.elevenlabs.voice_settings.stability == 0.3
    assert config.elevenlabs.api_key.get_secret_value() == KEY
    assert KEY not in repr(block) and KEY not in str(block.model_dump())
    assert KEY not in repr(config)


def test_block_applied_to_the_environment_reads_back_the_same(clean_env):
    assert not voice_config_from_env().uses_elevenlabs  # no key: the offline voice
    block = ElevenLabsCredentials(api_key=KEY, similarity_boost=0.9, base_url="http://127.0.0.1:9", max_attempts=3)
    block.apply()
    from_env = voice_config_from_env()
    assert from_env.uses_elevenlabs
    assert from_env.elevenlabs == block.elevenlabs_config()
