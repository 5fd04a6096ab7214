"""Fit a spoken line into its voice window so it sounds as if it had been said there.

The output WAV covers exactly the window's samples ``[round(start * rate), round(end * rate))`` at
the prepared audio's rate and channels: the new speech, trimmed of its silences, placed where the
original speech began, at the original's loudness, over room tone taken from the recording around
the window, so the renderer's crossfades into the original meet like with like.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import av
import numpy as np

from loom import storage
from loom.edits import AudioInsert
from loom.errors import RecipientFailed
from loom.prepared import PreparedTemplate
from loom.template import VoiceSegment
from loom.voice.clip import SpeechClip
from loom.voice.loudness import SILENT_LUFS, gain_to_match, integrated_loudness
from loom.voice.stretch import change_tempo
from loom.voice.wav import read_wav, read_wav_span, wav_bytes


@dataclass(frozen=True)
class FitLimits:
    """How far a line may be bent to fit.

    A line too long for its window first loses the excess of its long pauses, then is sped up, never
    beyond ``max_tempo``. A shorter line is never slowed or stretched to fill: it is placed as said.
    """

    max_tempo: float = 1.2  # faster than this sounds rushed
    pause_keep_s: float = 0.15  # an inner pause is shortened to this, never removed
    edge_s: float = 0.03  # speech stays clear of the renderer's edge crossfades
    context_s: float = 2.0  # original audio read on each side for room tone and noise floor
    default_lufs: float = -20.0  # when the window's original holds no speech to match


LIMITS = FitLimits()
_FRAME_S = 0.01
_PAD_S = 0.02  # kept around trimmed speech so soft onsets and releases survive
_FADE_S = 0.005  # removes clicks at the trimmed edges
_ROOM_REGION_S = 0.5
_ROOM_CHUNK_S = 0.2


def frame_rms(mono: np.ndarray, rate: int, frame_s: float = _FRAME_S) -> np.ndarray:
    """RMS of consecutive frames of ``frame_s`` (the last partial frame included)."""
    size = max(1, int(round(frame_s * rate)))
    count = int(np.ceil(mono.size / size))
    padded = np.zeros(count * size, dtype=np.float64)
    padded[: mono.size] = mono
    return np.sqrt(np.mean(padded.reshape(count, size) ** 2, axis=1))


def trim_silence(mono: np.ndarray, rate: int, floor_db: float = -40.0) -> tuple[int, int] | None:
    """Sample bounds [start, stop) of the speech in a clean clip, or None if it is silent."""
    rms = frame_rms(mono, rate)
    if rms.size == 0 or rms.max() < 10 ** (-60 / 20):
        return None
    loud = np.flatnonzero(rms >= max(rms.max() * 10 ** (floor_db / 20), 10 ** (-60 / 20)))
    size = int(round(_FRAME_S * rate))
    pad = int(round(_PAD_S * rate))
    return max(0, loud[0] * size - pad), min(mono.size, (loud[-1] + 1) * size + pad)


def shorten_pauses(mono: np.ndarray, rate: int, keep_s: float, floor_db: float = -40.0) -> np.ndarray:
    """Shorten every inner pause longer than ``keep_s`` to ``keep_s``, cutting from its middle."""
    rms = frame_rms(mono, rate)
    if rms.size == 0:
        return mono
    quiet = rms < max(rms.max() * 10 ** (floor_db / 20), 10 ** (-60 / 20))
    size = int(round(_FRAME_S * rate))
    keep = int(keep_s * rate)
    # Runs of quiet frames with speech on both sides: the leading pause is dropped, and a trailing
    # one has no closing flip so zip leaves it out.
    flips = np.flatnonzero(np.diff(quiet.astype(np.int8))) + 1
    bounds = flips[1:] if quiet[0] else flips
    runs = list(zip(bounds[::2].tolist(), bounds[1::2].tolist()))
    cuts = []
    for first, stop in runs:
        begin, end = first * size, min(stop * size, mono.size)
        if end - begin > keep:
            cuts.append((begin + keep // 2, end - (keep - keep // 2)))
    if not cuts:
        return mono
    pieces, cursor = [], 0
    for cut_from, cut_to in cuts:
        pieces.append(_fade_edges(mono[cursor:cut_from].copy(), rate))
        cursor = cut_to
    pieces.append(_fade_edges(mono[cursor:].copy(), rate))
    return np.concatenate(pieces).astype(np.float32)


def find_original_speech(window: np.ndarray, context: np.ndarray, rate: int) -> tuple[int, int] | None:
    """Sample bounds of the speech in the original window, judged against the noise floor around it."""
    rms = frame_rms(window, rate, 0.02)
    floor = float(np.percentile(frame_rms(context, rate, 0.02), 10)) if context.size else 0.0
    peak = float(rms.max()) if rms.size else 0.0
    if peak < max(floor * 4.0, 10 ** (-50 / 20)):  # not 12 dB above the room: no speech
        return None
    threshold = max(floor * 10 ** (10 / 20), peak * 10 ** (-30 / 20))
    loud = np.flatnonzero(rms >= threshold)
    size = int(round(0.02 * rate))
    return int(loud[0] * size), int(min(window.size, (loud[-1] + 1) * size))


def room_tone(context: np.ndarray, rate: int, length: int, seed: int) -> np.ndarray:
    """``length`` frames of the quietest part of ``context`` (frames, channels), looped seamlessly.

    Random chunks of the quietest half second are overlap-added with sine windows (equal power,
    so the level holds steady and no loop period is heard).
    """
    channels = context.shape[1]
    region_len = min(int(_ROOM_REGION_S * rate), context.shape[0])
    chunk = min(int(_ROOM_CHUNK_S * rate), region_len)
    if chunk < int(0.02 * rate) or length == 0:
        return np.zeros((length, channels), dtype=np.float32)
    energy = np.mean(context.astype(np.float64) ** 2, axis=1)
    running = np.concatenate([[0.0], np.cumsum(energy)])
    sums = running[region_len:] - running[:-region_len]
    begin = int(np.argmin(sums))
    region = context[begin : begin + region_len].astype(np.float64)
    hop = chunk // 2
    window = np.sin(np.pi * (np.arange(chunk) + 0.5) / chunk)[:, None]
    rng = np.random.default_rng(seed)
    out = np.zeros((length + 2 * chunk, channels), dtype=np.float64)
    for pos in range(0, length + chunk, hop):
        offset = int(rng.integers(0, region_len - chunk + 1))
        out[pos : pos + chunk] += region[offset : offset + chunk] * window
    return out[hop : hop + length].astype(np.float32)  # skip the first fade-in


def _fade_edges(mono: np.ndarray, rate: int) -> np.ndarray:
    fade = min(int(_FADE_S * rate), mono.size // 2)
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        mono[:fade] *= ramp
        mono[-fade:] *= ramp[::-1]
    return mono


def _resample(mono: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return mono.astype(np.float32)
    # FFmpeg's resampler (PyAV is loaded anyway); scipy.signal would cost ~1 s of import per process.

    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(mono, dtype=np.float32)[None, :], format="fltp", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=target)
    parts = [f.to_ndarray()[0] for f in resampler.resample(frame)]
    parts += [f.to_ndarray()[0] for f in resampler.resample(None)]
    out = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    expected = round(mono.size * target / rate)
    if out.size < expected:
        out = np.pad(out, (0, expected - out.size))
    return out[:expected].astype(np.float32)


def window_samples(start: float, end: float, rate: int) -> tuple[int, int]:
    """The window's samples [first, stop) on the recording's timeline."""
    return int(round(start * rate)), int(round(end * rate))


def fit_line_to_window(
    clip: SpeechClip,
    segment: VoiceSegment,
    prepared: PreparedTemplate,
    out_uri: str,
    limits: FitLimits = LIMITS,
) -> AudioInsert:
    """Place the clip's speech in the segment's window; raise ``RecipientFailed`` if it cannot fit."""
    rate, channels = prepared.audio_sample_rate, prepared.audio_channels
    first, stop = window_samples(segment.start_time, segment.end_time, rate)
    length = stop - first
    window_s = segment.end_time - segment.start_time

    # The original around the window: its speech sets where and how loud; its quiet parts the room.
    context_len = int(limits.context_s * rate)
    ctx_first = max(0, first - context_len)
    context, file_rate = read_wav_span(prepared.audio_uri, ctx_first, stop + context_len)
    if file_rate != rate:
        raise ValueError(f"{prepared.audio_uri} is {file_rate} Hz but the prepared template says {rate} Hz")
    context = _match_channels(context, channels)
    original = np.zeros((length, channels), dtype=np.float32)
    got = context[first - ctx_first : first - ctx_first + length]
    original[: got.shape[0]] = got
    original_mono = original.mean(axis=1)
    original_speech = find_original_speech(original_mono, context.mean(axis=1), rate)
    target_lufs = (
        integrated_loudness(original[original_speech[0] : original_speech[1]], rate)
        if original_speech
        else SILENT_LUFS
    )
    if target_lufs <= SILENT_LUFS + 10:
        target_lufs = limits.default_lufs

    # The new speech, at the recording's rate, without its leading and trailing silence.
    samples, clip_rate = read_wav(clip.uri)
    speech = _resample(samples.mean(axis=1), clip_rate, rate)
    bounds = trim_silence(speech, rate)
    if bounds is None:
        raise RecipientFailed(f'line "{segment.id}" came back silent from the {clip.provider} voice', field=segment.id)
    speech = speech[bounds[0] : bounds[1]].copy()
    speech_s = speech.size / rate

    edge = min(int(limits.edge_s * rate), length // 20)
    room = length - 2 * edge
    tempo = 1.0
    if speech.size > room:
        speech = shorten_pauses(speech, rate, limits.pause_keep_s)
    if speech.size > room:
        tempo = speech.size / room * 1.002  # atempo rounds; aim a hair short
        if tempo > limits.max_tempo:
            raise RecipientFailed(
                f'line "{segment.id}" needs {speech_s:.1f} s of speech, the segment has {window_s:.1f} s',
                field=segment.id,
            )
        speech = change_tempo(speech, rate, tempo)[:room]
    speech = _fade_edges(speech, rate)

    # Start where the original speech started; shift earlier only as far as needed to fit.
    wanted = original_speech[0] if original_speech else min(int(0.1 * rate), (room - speech.size) // 2 + edge)
    place = int(np.clip(wanted, edge, length - edge - speech.size))

    placed = np.repeat(speech[:, None], channels, axis=1)
    current = integrated_loudness(placed, rate)
    gain = gain_to_match(current, target_lufs, float(np.abs(speech).max()))
    placed *= gain
    achieved = integrated_loudness(placed, rate)

    seed = int(hashlib.sha256(f"{clip.cache_key}:{segment.id}".encode()).hexdigest()[:8], 16)
    out = room_tone(context, rate, length, seed)
    out[place : place + placed.shape[0]] += placed
    np.clip(out, -1.0, 1.0, out=out)
    storage.write_bytes(out_uri, wav_bytes(out, rate))

    return AudioInsert(
        segment_id=segment.id,
        uri=out_uri,
        start=segment.start_time,
        end=segment.end_time,
        sample_rate=rate,
        speech_start=place / rate,
        speech_end=(place + placed.shape[0]) / rate,
        stretch=round(tempo, 4),
        loudness_lufs=round(achieved, 2),
        target_lufs=round(target_lufs, 2),
        speech_cache_key=clip.cache_key,
        provider=clip.provider,
    )


def _match_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    if audio.shape[1] == channels:
        return audio
    mono = audio.mean(axis=1, keepdims=True)
    return np.repeat(mono, channels, axis=1)
