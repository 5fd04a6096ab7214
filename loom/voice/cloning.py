"""Instant voice cloning: upload a few clean recordings of the presenter, get a voice id back."""

from __future__ import annotations

import mimetypes
from pathlib import PurePosixPath

import httpx
from elevenlabs.core.api_error import ApiError

from loom import storage
from loom.errors import InputError
from loom.voice.config import ElevenLabsConfig, configured_elevenlabs
from loom.voice.elevenlabs import call_with_retries, make_client, request_options


def _refused_before_work(exc: BaseException) -> bool:
    """Retry only what cannot have created a voice: 429 and failures to connect.

    A 5xx or a timeout after the upload may still have made the voice, and a retry would make a
    second one, so those surface instead.
    """
    if isinstance(exc, ApiError):
        return exc.status_code == 429
    return isinstance(exc, httpx.ConnectError)


def clone_voice(
    name: str,
    files: list[str],
    *,
    description: str | None = None,
    remove_background_noise: bool = False,
    config: ElevenLabsConfig | None = None,
) -> str:
    """Create an ElevenLabs instant voice clone from ``files`` (paths or URIs); return its voice id."""
    config = config or configured_elevenlabs()
    if config.api_key is None:
        raise InputError("ELEVENLABS_API_KEY", "is not set", "cloning needs an ElevenLabs key: export ELEVENLABS_API_KEY=...")
    if not name.strip():
        raise InputError("name", "is empty", "give the voice a name with --name")
    if not files:
        raise InputError("files", "no audio files given", "pass one or more recordings of the presenter")
    uploads = []
    for uri in files:
        if not storage.exists(uri):
            raise InputError("files", f"no audio file at {uri}", "check the path")
        filename = PurePosixPath(uri.split("?")[0]).name or "sample.wav"
        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        uploads.append((filename, storage.read_bytes(uri), mime))
    client = make_client(config)
    response = call_with_retries(
        lambda: client.voices.ivc.create(
            name=name.strip(),
            files=uploads,
            description=description,
            remove_background_noise=remove_background_noise,
            request_options=request_options(config),
        ),
        config,
        "voice cloning",
        retryable=_refused_before_work,
    )
    return response.voice_id
