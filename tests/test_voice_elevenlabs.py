"""ElevenLabs speech and cloning against a fake ElevenLabs server on 127.0.0.1."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from testkit.fake_elevenlabs import CHAR_S, EDGE_SILENCE_S, FakeElevenLabs

from loom.errors import InputError, ServiceError
from loom.provider_slots import ELEVENLABS, refusals
from loom.settings import get_settings, reload_settings
from loom.template import VoiceSegment
from loom.voice import elevenlabs as eleven_module
from loom.voice.cloning import clone_voice
from loom.voice.config import ElevenLabsConfig, VoiceConfig, voice_config_from_env
from loom.voice.elevenlabs import ServiceUnavailable
from loom.voice.speech import speech_cache_key, synthesize_line
from loom.voice.wav import read_wav, write_wav

KEY = "sk_test_0123456789abcdef"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    with FakeElevenLabs(api_key=KEY) as server:
        monkeypatch.setenv("LOOM_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("ELEVENLABS_API_KEY", KEY)
        monkeypatch.setenv("ELEVENLABS_BASE_URL", server.base_url)
        reload_settings()
        yield server
    get_settings.cache_clear()


@pytest.fixture
def waits(monkeypatch):
    """The backoff waits asked for, recorded instead of slept."""
    asked: list[float] = []
    monkeypatch.setattr(eleven_module, "sleep", asked.append)
    return asked


def tts_requests(fake: FakeElevenLabs):
    return fake.requests_to("/v1/text-to-speech/")


def test_one_request_per_line_with_text_voice_and_key_then_cached(fake, waits):
    clip = synthesize_line("Hello Ada, welcome to Acme!", "presenter-voice")
    [req] = tts_requests(fake)
    assert req.path == "/v1/text-to-speech/presenter-voice/with-timestamps"
    assert req.headers["xi-api-key"] == KEY
    assert req.json["text"] == "Hello Ada, welcome to Acme!"
    assert req.json["model_id"] == "eleven_multilingual_v2"
    assert req.json["voice_settings"]["stability"] == 0.5 and req.json["voice_settings"]["similarity_boost"] == 0.75
    assert req.query["output_format"] == "pcm_24000"

    assert clip.provider == "elevenlabs" and clip.sample_rate == 24000 and not clip.cached
    samples, rate = read_wav(clip.uri)
    expected = 2 * EDGE_SILENCE_S + sum(CHAR_S if c.isalnum() else CHAR_S / 2 for c in clip.text)
    assert abs(samples.shape[0] / rate - expected) < 0.01  # the PCM was decoded at the asked rate
    assert np.sqrt(np.mean(samples**2)) > 0.05
    assert clip.alignment is not None and clip.alignment.characters[0] == "H"
    assert clip.cache_key == speech_cache_key("Hello Ada, welcome to Acme!", "presenter-voice")

    again = synthesize_line("Hello Ada, welcome to Acme!", "presenter-voice")
    assert again.cached and again.uri == clip.uri
    assert len(tts_requests(fake)) == 1  # the same line is never paid for twice
    synthesize_line("Hello Grace, welcome to Acme!", "presenter-voice")
    assert len(tts_requests(fake)) == 2


def test_cache_key_covers_provider_voice_model_and_settings(fake):
    eleven = voice_config_from_env()
    base = speech_cache_key("Hi Ada", "presenter-voice", eleven)
    other_model = eleven.model_copy(
        update={"elevenlabs": eleven.elevenlabs.model_copy(update={"model_id": "eleven_turbo_v2_5"})}
    )
    settings = eleven.elevenlabs.voice_settings.model_copy(update={"stability": 0.9})
    other_settings = eleven.model_copy(update={"elevenlabs": eleven.elevenlabs.model_copy(update={"voice_settings": settings})})
    keys = {
        base,
        speech_cache_key("Hi Ada", "other-voice", eleven),
        speech_cache_key("Hi Ada", "presenter-voice", other_model),
        speech_cache_key("Hi Ada", "presenter-voice", other_settings),
        speech_cache_key("Hi Ada", "presenter-voice", VoiceConfig()),  # offline
    }
    assert len(keys) == 5


def test_rate_limit_is_retried_honouring_retry_after(fake, waits):
    refused = refusals(ELEVENLABS)
    fake.rate_limit(times=2, retry_after="2")
    clip = synthesize_line("Hello Ada!", "presenter-voice")
    assert len(tts_requests(fake)) == 3 and clip.provider == "elevenlabs"
    assert len(waits) == 2 and all(2.0 <= w <= 30.0 for w in waits)
    assert refusals(ELEVENLABS) - refused == 2  # a 429 that still comes is counted


def test_calls_beyond_the_configured_slots_wait_instead_of_being_refused(fake, monkeypatch):
    """Eight lines at once against a plan that allows two calls: with LOOM_TTS_CONCURRENCY=2 the
    provider never sees a third, so nothing is refused; with 4 it refuses, and each 429 is counted."""
    fake.limit_concurrency(2, latency_s=0.15)
    monkeypatch.setenv("LOOM_TTS_CONCURRENCY", "2")
    reload_settings()
    with ThreadPoolExecutor(8) as pool:
        clips = list(pool.map(lambda n: synthesize_line(f"Hello number {n}!", "presenter-voice"), range(8)))
    assert all(c.provider == "elevenlabs" and not c.cached for c in clips)
    assert fake.peak_concurrency == 2 and fake.concurrency_refusals == 0

    monkeypatch.setenv("LOOM_TTS_CONCURRENCY", "4")
    monkeypatch.setattr(eleven_module, "sleep", lambda s: None)  # retried at once: the point is the count
    reload_settings()
    fake.limit_concurrency(2, latency_s=0.15)
    refused = refusals(ELEVENLABS)

    def speak(n: int) -> None:
        try:
            synthesize_line(f"Hello again number {n}!", "presenter-voice")
        except ServiceUnavailable:
            pass  # retried at once, a line can run out of tries: only the count matters here

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(speak, range(8)))
    assert fake.peak_concurrency > 2 and fake.concurrency_refusals > 0
    assert refusals(ELEVENLABS) - refused == fake.concurrency_refusals


def test_server_errors_back_off_and_give_up_after_the_bounded_tries(fake, waits, monkeypatch):
    monkeypatch.setenv("ELEVENLABS_MAX_ATTEMPTS", "5")
    fake.fail_next(503, times=6)
    with pytest.raises(ServiceUnavailable, match=r"HTTP 503 after 5 tries"):
        synthesize_line("Hello Ada!", "presenter-voice")
    assert len(tts_requests(fake)) == 5
    # Exponential within jitter: wait k is 0.5 s * 2**(k-1) plus at most 0.5 s, so each wait's
    # base doubles (a constant or linear backoff leaves these bands by the third wait).
    assert len(waits) == 4
    for k, wait in enumerate(waits, start=1):
        assert 0.5 * 2 ** (k - 1) <= wait <= 0.5 * 2 ** (k - 1) + 0.5, (k, waits)
    assert waits[3] / waits[2] >= 1.6 and waits[2] / waits[1] >= 1.33


def test_backoff_is_capped_by_the_longest_wait_allowed(fake, waits, monkeypatch):
    monkeypatch.setenv("ELEVENLABS_MAX_ATTEMPTS", "6")
    monkeypatch.setenv("ELEVENLABS_MAX_BACKOFF_S", "3")
    fake.fail_next(503, times=5)
    clip = synthesize_line("Hello Ada!", "presenter-voice")
    assert clip.provider == "elevenlabs" and len(tts_requests(fake)) == 6
    assert len(waits) == 5 and waits[:2] == sorted(waits[:2]) and waits[3] == waits[4] == 3.0, waits


def test_bad_key_fails_fast_with_one_line_that_never_shows_the_key(fake, waits, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "sk_wrong_key_fedcba9876543210"
    monkeypatch.setenv("ELEVENLABS_API_KEY", wrong)
    with pytest.raises(ServiceError) as failed:
        synthesize_line("Hello Ada!", "presenter-voice")
    message = str(failed.value)
    assert len(tts_requests(fake)) == 1 and waits == []
    assert "\n" not in message and "ELEVENLABS_API_KEY" in message and "401" in message
    assert wrong not in message and KEY not in message
    assert wrong not in caplog.text
    assert fake.requests[0].headers["xi-api-key"] == wrong  # it was sent, only as the header


def test_unknown_voice_and_exhausted_quota_fail_fast(fake, waits):
    with pytest.raises(ServiceError, match=r"no voice 'nobody'.*loom clone-voice"):
        synthesize_line("Hello Ada!", "nobody")
    fake.quota_left = 3
    with pytest.raises(ServiceError, match=r"quota exhausted \(HTTP 401\).*credits"):
        synthesize_line("Hello Ada!", "presenter-voice")
    assert len(tts_requests(fake)) == 2 and waits == []


def test_server_without_the_timestamps_route_gets_the_plain_request(fake, waits):
    fake.fail_next(404, {"detail": "Not Found"}, path_contains="with-timestamps")
    clip = synthesize_line("Hello Ada!", "presenter-voice")
    paths = [r.path for r in tts_requests(fake)]
    assert paths == ["/v1/text-to-speech/presenter-voice/with-timestamps", "/v1/text-to-speech/presenter-voice"]
    assert clip.alignment is None and read_wav(clip.uri)[0].shape[0] > 0.5 * 24000


def test_clone_voice_uploads_every_file_and_returns_the_new_voice(fake, tmp_path, waits):
    files = []
    for i, name in enumerate(("a.wav", "b.wav")):
        path = tmp_path / name
        write_wav(str(path), 0.1 * np.sin(np.linspace(0, 2000 * (i + 1), 16000)), 16000)
        files.append(str(path))
    fake.rate_limit(times=1, retry_after="1")
    voice_id = clone_voice("presenter", files)
    adds = fake.requests_to("/v1/voices/add")
    assert len(adds) == 2  # the 429 and the retry
    upload = adds[-1]
    assert upload.form["name"] == "presenter" and upload.headers["xi-api-key"] == KEY
    assert [name for name, _ in upload.files] == ["a.wav", "b.wav"]
    assert [data for _, data in upload.files] == [open(f, "rb").read() for f in files]
    assert voice_id in fake.voices
    clip = synthesize_line("Hi from the clone", voice_id)
    assert tts_requests(fake)[-1].path == f"/v1/text-to-speech/{voice_id}/with-timestamps" and clip.voice_id == voice_id


def test_clone_voice_needs_a_key_and_real_files(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="ELEVENLABS_API_KEY"):
        clone_voice("presenter", ["a.wav"], config=ElevenLabsConfig(api_key=None))
    with pytest.raises(InputError, match="no audio file"):
        clone_voice("presenter", [str(tmp_path / "missing.wav")], config=ElevenLabsConfig(api_key="k"))


def test_clone_server_error_is_not_retried(fake, tmp_path, waits):
    path = tmp_path / "a.wav"
    write_wav(str(path), np.zeros(1600), 16000)
    fake.fail_next(500, path_contains="voices/add")
    with pytest.raises(ServiceUnavailable):
        clone_voice("presenter", [str(path)])
    assert len(fake.requests_to("/v1/voices/add")) == 1  # a retry could create a second voice


def test_pipeline_voice_line_speaks_the_pronunciation_and_fits_the_window(fake, waits, tmp_path):
    """The pipeline's step: one request with the spoken form; the window holds it at the original's loudness."""
    from loom.pipeline import voice_line
    from loom.voice.loudness import integrated_loudness
    from tests.test_voice_fit import RATE, SPEECH_AT, make_prepared

    seg = VoiceSegment(id="greeting", start_time=1.0, end_time=3.6, template_text="Hi {client_name}!")
    prepared = make_prepared(tmp_path, seg)
    prepared.template.voice_id = "presenter-voice"
    values = {"client_name": "Siobhan", "client_name_pronunciation": "Shivawn"}
    insert = voice_line(prepared, seg, values)

    [req] = tts_requests(fake)
    assert req.json["text"] == "Hi Shivawn!" and req.path.startswith("/v1/text-to-speech/presenter-voice/")
    assert insert.text == "Hi Siobhan!" and insert.spoken_text == "Hi Shivawn!" and insert.provider == "elevenlabs"
    out, rate = read_wav(insert.uri)
    assert rate == RATE and out.shape[0] == round(3.6 * RATE) - round(1.0 * RATE)
    original, _ = read_wav(prepared.audio_uri)
    target = integrated_loudness(original[int(SPEECH_AT[0] * RATE) : int(SPEECH_AT[1] * RATE)], RATE)
    spoken = out[int(insert.speech_start * RATE) : int(insert.speech_end * RATE)]
    assert abs(integrated_loudness(spoken, RATE) - target) < 1.0

    voice_line(prepared, seg, values)  # another run, same line
    assert len(tts_requests(fake)) == 1


@pytest.mark.parametrize("output_format", ["mp3_44100_128", "opus_48000_64", "wav_22050"])
def test_compressed_output_formats_are_decoded(fake, waits, monkeypatch, output_format):
    monkeypatch.setenv("ELEVENLABS_OUTPUT_FORMAT", output_format)
    clip = synthesize_line("Hello Ada, welcome!", "presenter-voice")
    assert tts_requests(fake)[0].query["output_format"] == output_format
    samples, rate = read_wav(clip.uri)
    assert rate == int(output_format.split("_")[1])
    expected = 2 * EDGE_SILENCE_S + sum(CHAR_S if c.isalnum() else CHAR_S / 2 for c in clip.text)
    assert abs(samples.shape[0] / rate - expected) < 0.08  # codec priming/padding at most
    assert np.sqrt(np.mean(samples**2)) > 0.05


def test_retry_after_beyond_the_bound_fails_at_once(fake, waits):
    fake.rate_limit(times=1, retry_after="3600")
    with pytest.raises(ServiceUnavailable, match=r"HTTP 429 after 1 try; it asked to retry in 3600 s"):
        synthesize_line("Hello Ada!", "presenter-voice")
    assert len(tts_requests(fake)) == 1 and waits == []


def test_a_hung_request_times_out_and_is_retried(fake, waits, monkeypatch):
    monkeypatch.setenv("ELEVENLABS_TIMEOUT_S", "1")
    fake.hang_next(1.6)
    clip = synthesize_line("Hello Ada!", "presenter-voice")
    assert len(tts_requests(fake)) == 2 and len(waits) == 1 and clip.provider == "elevenlabs"
