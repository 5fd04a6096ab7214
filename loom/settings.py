"""Configuration from the environment (``LOOM_*``); Prefect blocks override it in deployed runs."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from loom.errors import InputError
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
    webhook_allowed_hosts: str = Field(default="", description="Comma-separated hosts webhooks may reach inside the network.")
    # What a client-supplied location (a logo, a sheet) may name: loom.input_policy.
    input_allowed_hosts: str = Field(
        default="", description="Comma-separated host or host:port that logo and sheet URLs may name inside the network."
    )
    allowed_buckets: str | None = Field(
        default=None, description="Comma-separated buckets client values may name as gs://; default: the home bucket only."
    )
    allowed_roots: str = Field(
        default="", description="Extra local folders (os.pathsep-separated) client values may name files in."
    )
    studio_upload_mb: int = Field(default=500, ge=1, description="Largest recording the studio takes as an upload, in MiB.")
    # links people open (see loom.links) and what a video costs (loom.costs)
    public_url: str = Field(
        default="http://127.0.0.1:8080",
        description="Base URL of the web server (`loom serve`, or the one `loom up` starts) that serves local "
        "files, share pages and campaign pages; links to a local home point here.",
    )
    link_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key that signs links to local files and campaign pages; default: a random key kept in "
        "<home>/secrets/links.key (shared by every process on one home).",
    )
    link_ttl_s: int = Field(
        default=7 * 24 * 3600, ge=60, le=7 * 24 * 3600, description="How long a signed link opens, in seconds (GCS V4 allows at most 7 days)."
    )
    price_cpu_second: float = Field(default=0.000024, ge=0, description="Estimated price of one CPU-second (Cloud Run vCPU-second).")
    price_tts_character: float = Field(
        default=0.0003, ge=0, description="Estimated price of one character sent to a paid speech provider (not the offline voice)."
    )

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
    try:
        return LoomSettings(**_configured)
    except ValidationError as exc:
        raise settings_error(exc) from None


def settings_error(exc: ValidationError) -> InputError:
    """A bad ``LOOM_*`` value as one line naming the variable."""
    first = exc.errors()[0]
    name = "LOOM_" + str(first["loc"][0]).upper() if first.get("loc") else "LOOM settings"
    return InputError(name, str(first["msg"]).removeprefix("Value error, "), f"set {name} to a valid value or unset it")


def reload_settings() -> LoomSettings:
    """Re-read the environment (tests and long-lived processes that change it)."""
    get_settings.cache_clear()
    return get_settings()


def configure(**values: object) -> LoomSettings:
    """Use these settings in this process over the environment's (checked like the environment's)."""
    try:
        LoomSettings(**{**_configured, **values})  # a bad value fails here, not in a later step
    except ValidationError as exc:
        raise settings_error(exc) from None
    _configured.update(values)
    return reload_settings()


def forget_configured() -> LoomSettings:
    """Back to the environment alone (tests)."""
    _configured.clear()
    return reload_settings()
