"""Fitting a spoken line into its window: trim, stretch limits, placement, loudness, room tone."""

from __future__ import annotations

import re

import numpy as np
import pytest

from loom.errors import RecipientFailed
from loom.media.probe import VideoInfo
from loom.prepared import PreparedTemplate
from loom.template import Template, VoiceSegment
from loom.voice.clip import SpeechClip
from loom.voice.fit import LIMITS, fit_line_to_window, frame_rms
from loom.voice.loudness import integrated_loudness
from loom.voice.speech import synthesize_line
from loom.voice.wav import read_wav, write_wav

RATE = 48000
NOISE = 0.003  # the room's hiss in the synthetic recording
SPEECH_AT = (1.2, 3.4)  # where the original line is said


def voiced(seconds: float, rate: int, f0: float = 160.0, amplitude: float = 0.2) -> np.ndarray:
    """A speech-like signal: a harmonic buzz at f0 with syllable-rate (4 Hz) loudness changes."""
    t = np.arange(int(seconds * rate)) / rate
    buzz = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    return (amplitude * buzz * envelope / 1.5).astype(np.float32)


@pytest.fixture
def home(loom_home):
    return loom_home


def make_prepared(tmp_path, segment: VoiceSegment, speech_amplitude: float = 0.2, channels: int = 2) -> PreparedTemplate:
    rng = np.random.default_rng(7)
    duration = 6.0
    audio = rng.normal(0, NOISE, (int(duration * RATE), channels)).astype(np.float32)
    a, b = (int(s * RATE) for s in SPEECH_AT)
    if speech_amplitude:
        audio[a:b] += voiced(SPEECH_AT[1] - SPEECH_AT[0], RATE, 120.0, speech_amplitude)[: b - a, None]
    uri = str(tmp_path / "prepared" / "audio.wav")
    write_wav(uri, audio, RATE)
    info = VideoInfo(
        uri="base.mp4", container="mov,mp4", codec="h264", pix_fmt="yuv420p", width=320, height=240,
        fps="25/1", time_base="1/12800", frame_count=150, duration=duration, has_audio=True,
        sample_rate=RATE, channels=channels,
    )  # fmt: skip
    template = Template(id="t", base_video_path="base.mp4", voice_id="v", voice_segments=[segment])
    return PreparedTemplate(
        template=template, version="test", root=str(tmp_path / "prepared"), source=info, video=info,
        working_video_uri="base.mp4", audio_uri=uri, audio_sample_rate=RATE, audio_channels=channels,
    )  # fmt: skip


def make_clip(
    tmp_path, seconds: float, rate: int = 24000, lead: float = 0.3, tail: float = 0.4, amplitude: float = 0.3
) -> SpeechClip:
    """A provider's clip: speech of ``seconds`` with silence before and after (to be trimmed)."""
    speech = voiced(seconds, rate, 220.0, amplitude)
    samples = np.concatenate([np.zeros(int(lead * rate)), speech, np.zeros(int(tail * rate))]).astype(np.float32)
    uri = str(tmp_path / f"clip-{seconds}.wav")
    write_wav(uri, samples, rate)
    return SpeechClip(uri=uri, sample_rate=rate, provider="test", cache_key=f"k{seconds}", duration=samples.size / rate)


def segment(start: float = 1.0, end: float = 3.6) -> VoiceSegment:
    return VoiceSegment(id="greeting", start_time=start, end_time=end, template_text="Hello {client_name}!")


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[np.argmax(spectrum)])


def test_offline_line_fills_exactly_the_window_at_the_original_loudness(tmp_path, home):
    seg = segment()
    prepared = make_prepared(tmp_path, seg)
    clip = synthesize_line("Hello Ada, welcome!", "v")
    insert = fit_line_to_window(clip, seg, prepared, str(tmp_path / "out" / "greeting.wav"))

    out, rate = read_wav(insert.uri)
    assert rate == RATE and out.shape == (round(3.6 * RATE) - round(1.0 * RATE), 2)
    assert insert.start == 1.0 and insert.end == 3.6 and insert.stretch == 1.0
    # Placed where the original line began (0.2 s into the window), not stretched to fill it.
    assert abs(insert.speech_start - (SPEECH_AT[0] - 1.0)) < 0.03
    assert insert.speech_end - insert.speech_start <= clip.duration + 1e-3
    assert insert.speech_end < 2.6 - 0.5
    # Loudness of the new speech, measured from the file, within 1 LU of the original speech.
    a, b = (int(s * RATE) for s in SPEECH_AT)
    original, _ = read_wav(prepared.audio_uri)
    target = integrated_loudness(original[a:b], RATE)
    got = integrated_loudness(out[int(insert.speech_start * RATE) : int(insert.speech_end * RATE)], RATE)
    assert abs(got - target) < 1.0
    assert abs(insert.target_lufs - target) < 0.5
    # Room tone, not digital silence, where nobody speaks; at the room's level (no seam at the edges).
    for edge in (out[: int(0.02 * RATE)], out[-int(0.02 * RATE) :]):
        level = float(np.sqrt(np.mean(edge**2)))
        assert NOISE * 0.5 < level < NOISE * 2.0


def test_long_line_is_sped_up_within_limits_and_keeps_its_pitch(tmp_path, home):
    seg = segment(1.0, 3.0)  # 2.0 s window
    prepared = make_prepared(tmp_path, seg)
    clip = make_clip(tmp_path, 2.15)  # needs ~1.1x
    insert = fit_line_to_window(clip, seg, prepared, str(tmp_path / "out.wav"))
    assert 1.05 < insert.stretch <= 1.2
    out, _ = read_wav(insert.uri)
    assert out.shape[0] == round(3.0 * RATE) - round(1.0 * RATE)
    # Sped up to fit between the edge margins, clear of the renderer's crossfades at both ends.
    edge = LIMITS.edge_s
    assert edge - 1 / RATE <= insert.speech_start < edge + 0.005
    assert 2.0 - edge - 0.005 < insert.speech_end <= 2.0 - edge + 1 / RATE
    spoken = out[int(insert.speech_start * RATE) : int(insert.speech_end * RATE), 0]
    assert abs(spoken.size / RATE - 2.15 / insert.stretch) < 0.08
    assert abs(dominant_hz(spoken, RATE) - 220.0) < 5.0  # time-stretched, not resampled (that would be 242 Hz)


def test_short_line_is_not_stretched_to_fill(tmp_path, home):
    seg = segment()
    prepared = make_prepared(tmp_path, seg)
    clip = make_clip(tmp_path, 0.8)
    insert = fit_line_to_window(clip, seg, prepared, str(tmp_path / "out.wav"))
    assert insert.stretch == 1.0
    # Trimmed of its 0.3 s lead and 0.4 s tail, a 20 ms pad kept each side: 0.8 + 2 * 0.02 s.
    assert abs((insert.speech_end - insert.speech_start) - 0.84) < 0.01
    # The pad before the onset is kept (room tone only), so the onset itself is not cut.
    out, _ = read_wav(insert.uri)
    place = round(insert.speech_start * RATE)
    pad = out[place : place + int(0.015 * RATE), 0]
    onset = out[place + int(0.025 * RATE) : place + int(0.045 * RATE), 0]
    assert float(np.sqrt(np.mean(pad**2))) < 2 * NOISE
    assert float(np.sqrt(np.mean(onset**2))) > 10 * NOISE


def test_line_that_cannot_fit_fails_the_recipient_with_a_clear_message(tmp_path, home):
    seg = segment(1.0, 3.5)  # 2.5 s window
    prepared = make_prepared(tmp_path, seg)
    clip = make_clip(tmp_path, 3.4)  # would need 1.36x
    with pytest.raises(RecipientFailed) as failed:
        fit_line_to_window(clip, seg, prepared, str(tmp_path / "out.wav"))
    assert re.fullmatch(r'line "greeting" needs 3\.4 s of speech, the segment has 2\.5 s', str(failed.value))
    assert not (tmp_path / "out.wav").exists()


def test_just_over_the_limit_fails_and_just_under_fits(tmp_path, home):
    seg = segment(1.0, 3.0)
    prepared = make_prepared(tmp_path, seg)
    with pytest.raises(RecipientFailed):
        fit_line_to_window(make_clip(tmp_path, 2.0 * 1.25), seg, prepared, str(tmp_path / "a.wav"))
    insert = fit_line_to_window(make_clip(tmp_path, 2.0 * 1.12), seg, prepared, str(tmp_path / "b.wav"))
    assert insert.stretch <= 1.2


def test_silent_original_gets_a_sensible_level_and_mono_layout(tmp_path, home):
    seg = segment()
    prepared = make_prepared(tmp_path, seg, speech_amplitude=0.0, channels=1)
    clip = make_clip(tmp_path, 1.0, amplitude=0.02)  # a quiet line: ~24 LU under the default level
    spoken, rate = read_wav(clip.uri)
    assert integrated_loudness(spoken[:, 0], rate) < -40.0
    insert = fit_line_to_window(clip, seg, prepared, str(tmp_path / "out.wav"))
    out, _ = read_wav(insert.uri)
    assert out.shape[1] == 1
    assert insert.target_lufs == -20.0 and abs(insert.loudness_lufs + 20.0) < 1.0
    assert abs(integrated_loudness(out[:, 0], RATE) + 20.0) < 1.5  # the file itself, not only the report
    # No original speech to follow: the line starts after a short lead-in.
    assert 0.02 <= insert.speech_start <= 0.2
    rms = frame_rms(out[:, 0], RATE)
    assert rms.max() > 10 * NOISE


def test_long_pauses_are_shortened_before_any_stretch(tmp_path, home):
    seg = segment(1.0, 3.4)  # 2.4 s window
    prepared = make_prepared(tmp_path, seg)
    rate = 24000
    word = voiced(1.0, rate, 220.0, 0.3)
    samples = np.concatenate([np.zeros(int(0.2 * rate)), word, np.zeros(int(0.7 * rate)), word, np.zeros(int(0.2 * rate))])
    uri = str(tmp_path / "paused.wav")
    write_wav(uri, samples, rate)
    clip = SpeechClip(uri=uri, sample_rate=rate, provider="test", cache_key="paused", duration=samples.size / rate)
    insert = fit_line_to_window(clip, seg, prepared, str(tmp_path / "out.wav"))
    assert insert.stretch == 1.0  # 2.7 s of speech fits 2.4 s once its 0.7 s pause is 0.15 s
    assert abs((insert.speech_end - insert.speech_start) - (2.0 + 0.15 + 0.04)) < 0.05
    out, _ = read_wav(insert.uri)
    spoken = out[int(insert.speech_start * RATE) : int(insert.speech_end * RATE), 0]
    assert abs(dominant_hz(spoken, RATE) - 220.0) < 5.0
