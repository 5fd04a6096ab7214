"""Configuration from the environment (``LOOM_*``); Prefect blocks override it in deployed runs."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from loom.uris import is_remote


class LoomSettings(BaseSettings):
    """Engine settings; every field can be set as ``LOOM_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="LOOM_", extra="ignore")

    home: str = Field(
        default_factory=lambda: str(Path.cwd() / ".loom"),
        description="Root for templates, prepared templates, caches and outputs: a folder or gs://bucket/prefix.",
    )
    wav2lip_checkpoint: str | None = Field(
        default=None, description="Wav2Lip checkpoint (local path or gs://). Lip-sync is skipped without it."
    )
    lipsync_backend: str = Field(
        default="wav2lip",
        description="A backend of the better_loom.lipsync entry points: wav2lip (local model), synclabs (hosted API, "
        "SYNC_API_KEY) or an installed plugin's name (`loom plugins` lists them).",
    )
    wav2lip_device: str = Field(default="auto", description="cuda, cpu or auto.")
    wav2lip_batch_size: int = Field(default=32, ge=1, le=1024)
    face_model: str | None = Field(
        default=None, description="YuNet ONNX model file for the stronger face detector; Haar cascades otherwise."
    )
    gpu_pool: str | None = Field(
        default=None, description="Name of a Prefect work pool that serves the wav2lip deployment."
    )
    cache_dir: str | None = Field(
        default=None,
        description="Local folder for this machine's caches (decoded frames of edited spans, prepared files "
        "fetched from gs://); default <home>/cache for a local home, else ~/.cache/better-loom.",
    )
    cache_mb: int = Field(
        default=4096, ge=0, description="Most disk this machine's caches may use, in MiB; 0 switches them off."
    )
    tts_concurrency: int = Field(
        default=3, ge=1, le=1000,
        description="ElevenLabs requests in flight at once, across every run and worker (the plan's concurrency: "
        "Free 2, Starter 3, Creator 5, Pro 10); `loom up` and infra/gcp-setup.sh size the `elevenlabs` limit with it.",
    )
    synclabs_concurrency: int = Field(
        default=3, ge=1, le=1000, description="Sync Labs generations running at once (the `synclabs` limit)."
    )
    gpu_lipsync_concurrency: int = Field(
        default=1, ge=1, le=1000, description="Wav2Lip runs on the GPU pool at once (the `gpu-lipsync` limit): its cards."
    )
    api_keys: SecretStr | None = Field(default=None, description="Comma-separated API keys of the jobs API.")
    webhook_secret: SecretStr | None = Field(default=None, description="HMAC secret for webhook signatures.")
    webhook_allowed_hosts: str = Field(default="", description="Comma-separated hosts exempt from the SSRF guard.")

    def local_cache_dir(self) -> str:
        if self.cache_dir:
            return self.cache_dir
        if not is_remote(self.home):
            return str(Path(self.home.removeprefix("file://")).resolve() / "cache")
        return str(Path.home() / ".cache" / "better-loom")


# Values handed to the engine by its caller (a Prefect block in a deployed run): they win over the
# environment, and nothing is written to the environment to pass them.
_configured: dict[str, object] = {}


@lru_cache(maxsize=1)
def get_settings() -> LoomSettings:
    return LoomSettings(**_configured)


def reload_settings() -> LoomSettings:
    """Re-read the environment (tests and long-lived processes that change it)."""
    get_settings.cache_clear()
    return get_settings()


def configure(**values: object) -> LoomSettings:
    """Use these settings in this process over the environment's (checked like the environment's)."""
    LoomSettings(**{**_configured, **values})  # a bad value fails here, not in a later step
    _configured.update(values)
    return reload_settings()


def forget_configured() -> LoomSettings:
    """Back to the environment alone (tests)."""
    _configured.clear()
    return reload_settings()
