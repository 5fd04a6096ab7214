"""Sync Labs (sync.so) as the hosted alternative to local Wav2Lip, behind the same step interface.

The API (v2): ``POST /v2/generate`` with ``x-api-key`` and a JSON body naming the model, one
video and one audio input by URL and options; ``GET /v2/generate/{id}`` until the status is
``COMPLETED`` (then ``outputUrl``) or ``FAILED`` / ``REJECTED`` / ``CANCELLED`` (then ``error``).
Sync Labs fetches the inputs itself, so they must be reachable URLs: ``https://`` as they are,
``gs://`` as signed URLs. The window is cut from the working video, sent with the fitted line,
and the result's lower face is taken back as patches, like the local engine's.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from loom import storage
from loom.edits import AudioInsert, PatchSetRef
from loom.errors import InputError, RecipientFailed, ServiceError
from loom.lipsync.clips import (
    ClipMismatch,
    cut_window,
    lower_face_patches,
    returned_frames,
)
from loom.lipsync.faces import load_face_track
from loom.media.frames import read_frames
from loom.media.patches import PatchSet
from loom.prepared import PreparedTemplate
from loom.provider_slots import SYNCLABS, count_refusal, provider_slot
from loom.template import VoiceSegment

log = logging.getLogger("loom.lipsync")

DONE = "COMPLETED"
FAILED = ("FAILED", "REJECTED", "CANCELLED")
RETRY_STATUS = (408, 429, 500, 502, 503, 504)


class SyncLabsSettings(BaseSettings):
    """``SYNC_API_KEY`` (the SDK's own variable), ``SYNC_BASE_URL``, ``SYNC_MODEL``."""

    model_config = SettingsConfigDict(env_prefix="SYNC_", extra="ignore")

    api_key: SecretStr | None = Field(default=None, description="Sync Labs API key (x-api-key).")
    base_url: str = Field(default="https://api.sync.so", description="API root, without /v2.")
    model: str = Field(default="lipsync-2", description="sync-3, lipsync-2, lipsync-2-pro, ...")
    sync_mode: str = Field(default="cut_off", description="What to do when audio and video lengths differ.")
    poll_seconds: float = Field(default=5.0, gt=0)
    retry_seconds: float = Field(default=1.0, gt=0, description="First wait before retrying a transient error.")
    timeout_seconds: float = Field(default=1800.0, gt=0, description="Give up on a generation after this long.")


# Sync Labs settings handed to the engine by its caller (the Sync Labs block in a deployed run).
_configured: list[SyncLabsSettings] = []


def use_synclabs(settings: SyncLabsSettings | None) -> None:
    """Use ``settings`` in this process instead of the ``SYNC_*`` environment (None: the environment)."""
    _configured[:] = [settings] if settings is not None else []


def configured_synclabs() -> SyncLabsSettings:
    return _configured[0] if _configured else SyncLabsSettings()


class Generation(BaseModel):
    """A generation as the API reports it (the fields we use)."""

    id: str
    status: str
    model: str | None = None
    outputUrl: str | None = None  # noqa: N815 - the API's field name
    outputDuration: float | None = None  # noqa: N815
    error: str | None = None


class SyncLabsClient:
    """A small client for the generate endpoints, with retries on transient HTTP errors."""

    def __init__(self, settings: SyncLabsSettings | None = None, http: httpx.Client | None = None) -> None:
        self.settings = settings or configured_synclabs()
        if self.settings.api_key is None or not self.settings.api_key.get_secret_value():
            raise InputError("SYNC_API_KEY", "no Sync Labs API key is set", "set SYNC_API_KEY or the synclabs block")
        self._http = http or httpx.Client(base_url=self.settings.base_url.rstrip("/"), timeout=60.0)

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: object) -> dict:
        headers = {"x-api-key": self.settings.api_key.get_secret_value(), "accept": "application/json"}
        delay = self.settings.retry_seconds
        for attempt in range(5):
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if attempt == 4:
                    raise ServiceError(f"Sync Labs unreachable: {exc}") from exc
            else:
                if response.status_code == 429:
                    count_refusal(SYNCLABS)
                if response.status_code not in RETRY_STATUS or attempt == 4:
                    break
            time.sleep(delay)
            delay = min(delay * 2, 10 * self.settings.retry_seconds)
        if response.status_code in (401, 403):
            raise ServiceError(f"Sync Labs refused the API key ({response.status_code}): check SYNC_API_KEY")
        if response.status_code >= 400:
            raise ServiceError(f"Sync Labs {method} {path} failed ({response.status_code}): {response.text[:300]}")
        return response.json()

    def create(self, video_url: str, audio_url: str, output_name: str | None = None) -> Generation:
        body: dict[str, object] = {
            "model": self.settings.model,
            "input": [{"type": "video", "url": video_url}, {"type": "audio", "url": audio_url}],
            "options": {"sync_mode": self.settings.sync_mode},
        }
        if output_name:
            body["outputFileName"] = output_name
        return Generation.model_validate(self._request("POST", "/v2/generate", json=body))

    def get(self, generation_id: str) -> Generation:
        return Generation.model_validate(self._request("GET", f"/v2/generate/{generation_id}"))

    def wait(self, generation_id: str) -> Generation:
        """Poll until the generation is done; a failed one raises ``RecipientFailed`` with its error."""
        deadline = time.monotonic() + self.settings.timeout_seconds
        while True:
            gen = self.get(generation_id)
            if gen.status == DONE:
                if not gen.outputUrl:
                    raise ServiceError(f"Sync Labs generation {gen.id} completed without an outputUrl")
                return gen
            if gen.status in FAILED:
                raise RecipientFailed(f"lip-sync (Sync Labs) {gen.status.lower()}: {gen.error or 'no reason given'}")
            if time.monotonic() > deadline:
                raise RecipientFailed(f"lip-sync (Sync Labs) generation {gen.id} still {gen.status} after timeout")
            time.sleep(self.settings.poll_seconds)

    def download(self, url: str, target: Path) -> Path:
        with self._http.stream("GET", url) as response:
            if response.status_code >= 400:
                raise ServiceError(f"Sync Labs output download failed ({response.status_code})")
            with open(target, "wb") as handle:
                for chunk in response.iter_bytes(1 << 20):
                    handle.write(chunk)
        return target

    def lipsync(self, video_url: str, audio_url: str, target: Path, output_name: str | None = None) -> Path:
        """Submit, wait, download: the lip-synced video at ``target``. The generation holds one of
        the account's Sync Labs slots from submission to download (``loom.provider_slots``)."""
        with provider_slot(SYNCLABS):
            gen = self.create(video_url, audio_url, output_name)
            log.info("lip-sync: Sync Labs generation %s submitted", gen.id)
            done = self.wait(gen.id)
            return self.download(done.outputUrl, target)


def reachable_url(uri: str, expires_seconds: int = 3600) -> str:
    """A URL Sync Labs can fetch: http(s) as is, gs:// signed; local files cannot be sent."""
    if uri.startswith(("http://", "https://")):
        return uri
    if uri.startswith(("gs://", "gcs://")):
        import fsspec  # as in loom.storage: only for gs:// (~50 ms)

        return fsspec.filesystem("gcs").sign(uri, expiration=expires_seconds)
    raise InputError(
        "LOOM_HOME", f"{uri} is a local file Sync Labs cannot fetch", "use a gs:// LOOM_HOME (signed URLs) or the local Wav2Lip engine"
    )


def synclabs_segment(
    prepared: PreparedTemplate,
    segment: VoiceSegment,
    insert: AudioInsert,
    out_uri: str,
    client: SyncLabsClient | None = None,
    publish: Callable[[str], str] | None = None,
) -> PatchSetRef:
    """Mouth patches from Sync Labs for the window's frames with a face (same contract as Wav2Lip's).

    ``publish`` turns a stored URI into a URL Sync Labs can fetch (default: ``reachable_url``).
    """
    started = time.perf_counter()
    client = client or SyncLabsClient()
    publish = publish or reachable_url
    first, stop = prepared.segment_frames(segment.start_time, segment.end_time)
    track = load_face_track(prepared.faces[segment.id]) if segment.id in prepared.faces else None
    work = storage.join(storage.home(), "work", "synclabs", f"{prepared.version}-{segment.id}-{int(time.time() * 1000)}")
    patches = PatchSet()
    with tempfile.TemporaryDirectory(prefix="loom-synclabs-") as tmp:
        window = cut_window(prepared.working_video_uri, first, stop, prepared.video.frame_rate, Path(tmp) / "window.mp4")
        video_uri = storage.join(work, "window.mp4")
        storage.write_bytes(video_uri, window.read_bytes())
        result = client.lipsync(publish(video_uri), publish(insert.uri), Path(tmp) / "result.mp4", f"{segment.id}")
        try:
            shape = (prepared.video.height, prepared.video.width, 3)
            synced = returned_frames(result, stop - first, shape)
            originals = read_frames(prepared.working_video_uri, first, stop)
            box = track.box if track is not None else (lambda i: None)
            for item in lower_face_patches(originals, synced, box):
                if item.patch is not None:
                    patches.add(item.index, item.patch)
        except ClipMismatch as exc:
            raise ServiceError(f"Sync Labs {exc}") from None
        finally:
            storage.remove(work)
    patches.save(out_uri)
    with_face = sum(1 for i in range(first, stop) if track is not None and track.box(i) is not None)
    return PatchSetRef(
        segment_id=segment.id,
        kind="lipsync",
        uri=out_uri,
        first_frame=first,
        stop_frame=stop,
        frames_patched=len(patches),
        qa={
            "backend": "synclabs",
            "model": client.settings.model,
            "frames": stop - first,
            "frames_without_face": (stop - first) - with_face,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
