"""The offline voice (espeak-ng from its wheel) and the speech cache, with no key and no network."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from loom.settings import reload_settings
from loom.voice import provider as provider_module
from loom.voice.offline import speak_offline
from loom.voice.speech import speech_cache_key, synthesize_line
from loom.voice.wav import read_wav


@pytest.fixture
def home(loom_home):
    return loom_home


def test_offline_voice_speaks_the_line():
    audio = speak_offline("Hello Ada, welcome to the demo of our product.")
    samples, rate = audio.samples, audio.sample_rate
    duration = samples.size / rate
    assert rate == 22050
    assert 1.5 < duration < 5.0  # ten words at ~165 words a minute
    rms = np.sqrt(np.mean(samples**2))
    assert rms > 0.02
    # Voiced speech: most energy in the voice band, not DC or hiss.
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1 / rate)
    band = spectrum[(freqs > 80) & (freqs < 4000)].sum() / spectrum.sum()
    assert band > 0.8
    # Word timing covers the text in order and ends inside the audio.
    alignment = audio.alignment
    assert alignment is not None and "".join(alignment.characters) == "Hello Ada, welcome to the demo of our product."
    assert alignment.starts == sorted(alignment.starts)
    assert alignment.starts[alignment.characters.index("w")] > 0.3  # "welcome" is not the first word
    assert max(alignment.ends) <= duration + 1e-6


def test_longer_text_takes_longer():
    short = speak_offline("Hi Bo.")
    long = speak_offline("Hi Bartholomew, thanks for taking the time to look at this today.")
    assert long.samples.size > 2.5 * short.samples.size


def test_synthesize_line_caches_under_home_and_announces_offline_once(home, caplog, monkeypatch):
    monkeypatch.setattr(provider_module, "_announced", False)
    caplog.set_level(logging.WARNING, logger="loom.voice")
    first = synthesize_line("Hello Ada!", "presenter-voice")
    second = synthesize_line("Hello  Ada!", "presenter-voice")  # same words, other spacing
    other = synthesize_line("Hello Grace!", "presenter-voice")
    assert first.provider == "espeak" and not first.cached
    assert second.cached and second.uri == first.uri and second.cache_key == first.cache_key
    assert other.cache_key != first.cache_key
    assert first.uri == str(home / "speech" / f"{first.cache_key}.wav")
    assert speech_cache_key("Hello Ada!", "presenter-voice") == first.cache_key
    samples, rate = read_wav(first.uri)
    assert rate == first.sample_rate and abs(samples.shape[0] / rate - first.duration) < 1e-3
    offline_notes = [r for r in caplog.records if "offline voice" in r.getMessage()]
    assert len(offline_notes) == 1
    assert "ELEVENLABS_API_KEY" in offline_notes[0].getMessage()


def test_cached_line_survives_a_new_process_view(home):
    """A clip found by key on disk (as another machine sharing the home would) is reused."""
    clip = synthesize_line("Good morning, Lin.", "v1")
    reload_settings()  # a fresh settings object, same home
    again = synthesize_line("Good morning, Lin.", "v1")
    assert again.cached and again.cache_key == clip.cache_key
