"""The ElevenLabs Prefect block produces the engine's plain config; the key stays masked."""

from __future__ import annotations

import os

import pytest

from blocks.elevenlabs import ElevenLabsCredentials
from loom.voice.config import use_elevenlabs, voice_config_from_env

KEY = "sk_block_secret_42"


NAMES = [f"ELEVENLABS_{n}" for n in ("API_KEY", "BASE_URL", "MODEL_ID", "OUTPUT_FORMAT", "TIMEOUT_S", "MAX_ATTEMPTS", "VOICE_SETTINGS")]


@pytest.fixture
def clean_env():
    """No ELEVENLABS_* before, and no block's config left behind after."""
    saved = {name: os.environ.pop(name) for name in NAMES if name in os.environ}
    yield
    use_elevenlabs(None)
    os.environ.update(saved)


def test_block_gives_the_engine_config_and_hides_the_key(clean_env):
    block = ElevenLabsCredentials(api_key=KEY, model_id="eleven_turbo_v2_5", stability=0.3, base_url="http://127.0.0.1:9")
    config = block.voice_config()
    assert config.uses_elevenlabs and config.elevenlabs.model_id == "eleven_turbo_v2_5"
    assert config.elevenlabs.voice_settings.stability == 0.3
    assert config.elevenlabs.api_key.get_secret_value() == KEY
    assert KEY not in repr(block) and KEY not in str(block.model_dump())
    assert KEY not in repr(config)


def test_applied_block_is_the_engines_voice_and_the_environment_is_untouched(clean_env):
    assert not voice_config_from_env().uses_elevenlabs  # no key: the offline voice
    block = ElevenLabsCredentials(api_key=KEY, similarity_boost=0.9, base_url="http://127.0.0.1:9", max_attempts=3)
    before = dict(os.environ)
    block.apply()
    assert dict(os.environ) == before  # handed over typed, not through the environment
    in_force = voice_config_from_env()
    assert in_force.uses_elevenlabs
    assert in_force.elevenlabs == block.elevenlabs_config()
    use_elevenlabs(None)
    assert not voice_config_from_env().uses_elevenlabs


def test_the_blocks_concurrency_sizes_the_providers_slots(clean_env, monkeypatch):
    from loom import settings
    from loom.provider_slots import ELEVENLABS, slots_configured

    monkeypatch.setenv("LOOM_TTS_CONCURRENCY", "2")
    settings.reload_settings()
    try:
        ElevenLabsCredentials(api_key=KEY).apply()
        assert slots_configured(ELEVENLABS) == 2  # unset in the block: the environment's
        ElevenLabsCredentials(api_key=KEY, concurrency=7).apply()
        assert slots_configured(ELEVENLABS) == 7  # the account's plan, as the block says
    finally:
        settings.forget_configured()
