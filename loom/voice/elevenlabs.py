"""ElevenLabs through its official SDK: text-to-speech with timestamps, faults turned into plain lines.

Every attempt holds one of the account's concurrency slots (``loom.provider_slots``: shared by every
run on every worker under Prefect) and gives it back before any wait, so a row waiting to retry never
blocks another's call; a 429 that still comes (another client of the account) is counted.
Retries are ours, not the SDK's (its streaming calls never retry and its others retry twice without
a bound we choose): 429, 408 and 5xx and dropped connections are retried with exponential backoff
and jitter, waiting at least what ``Retry-After`` asks; a bad key, an unknown voice or an exhausted
quota fail at once with one line that names the fix. The key is sent as ``xi-api-key`` and never
appears in a message or a log line.
"""

from __future__ import annotations

import base64
import email.utils
import io
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import av
import httpx
import numpy as np
from elevenlabs.client import ElevenLabs
from elevenlabs.core.api_error import ApiError
from elevenlabs.types import VoiceSettings as SdkVoiceSettings
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from loom.errors import ServiceError
from loom.provider_slots import count_refusal, provider_slot
from loom.voice.clip import Alignment, SpokenAudio
from loom.voice.config import ElevenLabsConfig

log = logging.getLogger("loom.voice")

PROVIDER = "elevenlabs"
RETRYABLE_STATUS = frozenset({408, 409, 429})
T = TypeVar("T")

# Seam for tests: they record the waits instead of sleeping through them.
sleep: Callable[[float], None] = time.sleep


class ServiceUnavailable(RuntimeError):
    """ElevenLabs kept failing with errors that retrying might fix, and the tries ran out."""


def make_client(config: ElevenLabsConfig) -> ElevenLabs:
    if config.api_key is None:
        raise ServiceError("no ElevenLabs API key: set ELEVENLABS_API_KEY (or the ElevenLabs block's api_key)")
    return ElevenLabs(
        api_key=config.api_key.get_secret_value(),
        base_url=api_root(config.base_url),
        timeout=config.timeout_s,
    )


def api_root(base_url: str) -> str:
    """The SDK appends ``v1/...`` itself; accept a root given with or without ``/v1``."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def request_options(config: ElevenLabsConfig) -> dict[str, int]:
    return {"max_retries": 0, "timeout_in_seconds": int(np.ceil(config.timeout_s))}


# ---------------------------------------------------------------- faults


def _detail(exc: ApiError) -> tuple[str, str]:
    """(status word, message) from an ElevenLabs error body ``{"detail": {"status", "message"}}``."""
    body = exc.body
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, dict):
        return str(detail.get("status", "") or detail.get("code", "")), str(detail.get("message", "") or "")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):  # FastAPI-style 422
        return "validation_error", str(detail[0].get("msg", ""))
    return "", str(detail or "")


def _redact(text: str, config: ElevenLabsConfig) -> str:
    key = config.api_key.get_secret_value() if config.api_key else ""
    text = " ".join(str(text).split())[:200]
    return text.replace(key, "[key]") if key else text


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ApiError):
        return exc.status_code is not None and (exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500)
    return isinstance(exc, (httpx.TransportError, httpx.TimeoutException))


def retry_after_s(exc: BaseException | None) -> float | None:
    """Seconds a 429/503 asked us to wait (``Retry-After`` as seconds or an HTTP date)."""
    headers = getattr(exc, "headers", None) or {}
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value.strip() else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def service_error(exc: ApiError, config: ElevenLabsConfig, voice_id: str | None = None) -> ServiceError:
    """One line that says what ElevenLabs refused and what to change."""
    status = exc.status_code
    word, message = _detail(exc)
    said = f" ({_redact(message, config)})" if message else ""
    if word in {"quota_exceeded", "insufficient_credits"} or "quota" in message.lower():
        return ServiceError(
            f"ElevenLabs quota exhausted (HTTP {status}){said}: add credits or upgrade the plan, "
            "or unset ELEVENLABS_API_KEY to use the offline voice"
        )
    if word in {"voice_not_found", "voice_does_not_exist"} or (status == 404 and voice_id is not None):
        return ServiceError(
            f"ElevenLabs has no voice {voice_id!r} (HTTP {status}): set the template's voice_id to a voice of this "
            "account, or clone one with `loom clone-voice --name N FILES...`"
        )
    if status in (401, 403):
        return ServiceError(
            f"ElevenLabs refused the API key (HTTP {status}){said}: set ELEVENLABS_API_KEY "
            "(or the ElevenLabs block's api_key) to a valid key with text-to-speech and voices access"
        )
    return ServiceError(f"ElevenLabs refused the request (HTTP {status}){said}: check the model id, output format and voice settings")


def _wait(config: ElevenLabsConfig) -> Callable[[RetryCallState], float]:
    backoff = wait_exponential_jitter(initial=0.5, max=config.max_backoff_s, exp_base=2, jitter=0.5)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return max(backoff(state), retry_after_s(exc) or 0.0)

    return wait


def _stop(config: ElevenLabsConfig) -> Callable[[RetryCallState], bool]:
    """Stop after ``max_attempts``, or at once when the server asks for a longer wait than we allow."""
    attempts = stop_after_attempt(config.max_attempts)

    def stop(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after_s(exc)
        return attempts(state) or (asked is not None and asked > config.max_backoff_s)

    return stop


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        code = getattr(exc, "status_code", None) or type(exc).__name__
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("ElevenLabs %s: %s on try %d, retrying in %.1f s", what, code, state.attempt_number, wait)

    return before_sleep


def call_with_retries(
    call: Callable[[], T],
    config: ElevenLabsConfig,
    what: str,
    voice_id: str | None = None,
    retryable: Callable[[BaseException], bool] = is_retryable,
) -> T:
    """Run one API call, retrying transient faults; permanent ones become ``ServiceError``."""

    def attempt() -> T:
        with provider_slot(PROVIDER):
            try:
                return call()
            except ApiError as exc:
                if exc.status_code == 429:
                    count_refusal(PROVIDER)
                raise

    retrying = Retrying(
        stop=_stop(config),
        wait=_wait(config),
        retry=retry_if_exception(retryable),
        sleep=lambda seconds: sleep(seconds),
        before_sleep=_log_retry(what),
        reraise=True,
    )
    try:
        return retrying(attempt)
    except ApiError as exc:
        if is_retryable(exc):
            tries = retrying.statistics.get("attempt_number", 1)
            asked = retry_after_s(exc)
            later = f"it asked to retry in {asked:.0f} s" if asked and asked > config.max_backoff_s else "try again later"
            raise ServiceUnavailable(
                f"ElevenLabs {what}: HTTP {exc.status_code} after {tries} tr{'y' if tries == 1 else 'ies'}; "
                f"{later} (or raise ELEVENLABS_MAX_ATTEMPTS / ELEVENLABS_MAX_BACKOFF_S)"
            ) from None
        raise service_error(exc, config, voice_id) from None
    except (httpx.TransportError, httpx.TimeoutException) as exc:
        tries = retrying.statistics.get("attempt_number", 1)
        raise ServiceUnavailable(
            f"ElevenLabs {what}: {type(exc).__name__} after {tries} tr{'y' if tries == 1 else 'ies'} to "
            f"{api_root(config.base_url)}; check the network or ELEVENLABS_BASE_URL"
        ) from None


# ---------------------------------------------------------------- audio


def decode_audio(data: bytes, output_format: str) -> tuple[np.ndarray, int]:
    """Mono float32 samples and rate of what came back: raw ``pcm_*`` as asked, or any container
    (WAV, MP3, ...) a proxy might send instead, decoded by FFmpeg."""
    if data[:4] == b"RIFF" or data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0) or data[:4] == b"OggS":
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono")
            pieces = [
                out.to_ndarray().reshape(-1)
                for frame in container.decode(stream)
                for out in resampler.resample(frame)
            ]
            rate = stream.rate or stream.codec_context.sample_rate
        return (np.concatenate(pieces) if pieces else np.zeros(0, np.float32)).astype(np.float32), int(rate)
    rate = int(output_format.split("_")[1])
    usable = len(data) - len(data) % 2
    return np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0, rate


def is_missing_route(exc: BaseException) -> bool:
    """A bare 404 (``{"detail": "Not Found"}``): the server lacks the endpoint, not the voice."""
    if not isinstance(exc, ApiError) or exc.status_code != 404:
        return False
    word, message = _detail(exc)
    return not word and message.strip().lower() in {"", "not found"}


class _NoTimestampsRoute(Exception):
    """The server (a proxy or stand-in) has no with-timestamps route; use the plain one."""


def _sdk_settings(config: ElevenLabsConfig) -> SdkVoiceSettings:
    s = config.voice_settings
    return SdkVoiceSettings(
        stability=s.stability,
        similarity_boost=s.similarity_boost,
        style=s.style,
        use_speaker_boost=s.use_speaker_boost,
        speed=s.speed,
    )


class ElevenLabsProvider:
    """The presenter's cloned voice; one request per line (the cache prevents repeats)."""

    name = PROVIDER

    def __init__(self, config: ElevenLabsConfig) -> None:
        self.config = config

    def identity(self, voice_id: str) -> tuple[str, str, dict[str, object]]:
        settings = self.config.voice_settings.model_dump()
        settings["output_format"] = self.config.output_format
        return voice_id, self.config.model_id, settings

    def speak(self, text: str, voice_id: str) -> SpokenAudio:
        config = self.config
        client = make_client(config)
        common = dict(
            text=text,
            model_id=config.model_id,
            output_format=config.output_format,
            voice_settings=_sdk_settings(config),
            request_options=request_options(config),
        )

        def with_timestamps():
            try:
                return client.text_to_speech.convert_with_timestamps(voice_id, **common)
            except ApiError as exc:
                if is_missing_route(exc):
                    raise _NoTimestampsRoute from None
                raise

        def plain() -> bytes:
            # The streaming call raises its errors while iterated, so it is read whole in here.
            return b"".join(client.text_to_speech.convert(voice_id, **common))

        alignment = None
        try:
            response = call_with_retries(with_timestamps, config, "text-to-speech", voice_id=voice_id)
        except _NoTimestampsRoute:
            log.warning("%s has no text-to-speech with-timestamps route; using the plain one", api_root(config.base_url))
            data = call_with_retries(plain, config, "text-to-speech", voice_id=voice_id)
        else:
            data = base64.b64decode(response.audio_base_64)
            if response.alignment is not None:
                alignment = Alignment(
                    characters=list(response.alignment.characters),
                    starts=list(response.alignment.character_start_times_seconds),
                    ends=list(response.alignment.character_end_times_seconds),
                )
        samples, rate = decode_audio(data, config.output_format)
        if samples.size == 0:
            raise ServiceUnavailable("ElevenLabs text-to-speech returned no audio; try again")
        return SpokenAudio(samples=samples, sample_rate=rate, alignment=alignment)
