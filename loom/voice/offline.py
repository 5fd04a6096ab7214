"""The offline voice: espeak-ng, from the ``espeakng-loader`` wheel, driven through ctypes.

It needs no key, no network and no system package: the wheel ships ``libespeak-ng.so`` and its
``espeak-ng-data``. It is robotic, but it speaks the line with real timing, which is what the demo,
the tests and key-less runs need (fit, loudness and lip-sync all work on it as on a cloned voice).
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import espeakng_loader
import numpy as np

from loom.voice.clip import Alignment, SpokenAudio

PROVIDER = "espeak"

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_END = 5
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_EE_OK = 0


class _Event(ctypes.Structure):
    # espeak_EVENT; ``id`` is a union of int / const char* / char[8], so pointer-sized here.
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_void_p),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class _Word:
    start_char: int  # 0-based index into the text
    length: int
    sample: int


class _Engine:
    """The one espeak-ng instance of this process: its state is global, so calls are serialized."""

    def __init__(self) -> None:
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_Callback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialize (returned {rate})")
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._words: list[_Word] = []
        self._callback = _Callback(self._on_audio)  # kept referenced: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self.lock = threading.Lock()

    def _on_audio(self, wav: ctypes.POINTER(ctypes.c_short), count: int, events: ctypes.POINTER(_Event)) -> int:
        if count > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_WORD:
                self._words.append(_Word(ev.text_position - 1, ev.length, ev.sample))
            i += 1
        return 0  # 0 = go on

    def speak(self, text: str, voice: str, words_per_minute: int, pitch: int) -> tuple[np.ndarray, list[_Word]]:
        lib = self._lib
        if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise ValueError(f"espeak-ng has no voice named {voice!r}")
        lib.espeak_SetParameter(_PARAM_RATE, words_per_minute, 0)
        lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
        lib.espeak_SetParameter(_PARAM_VOLUME, 100, 0)
        self._chunks, self._words = [], []
        data = ctypes.create_string_buffer(text.encode("utf-8"))
        status = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
        if status != _EE_OK:
            raise RuntimeError(f"espeak-ng could not speak the line (error {status})")
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        return pcm, list(self._words)


_engine: _Engine | None = None
_engine_lock = threading.Lock()


def _get_engine() -> _Engine:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Engine()
        return _engine


def _word_alignment(text: str, words: list[_Word], total: int, rate: int) -> Alignment:
    """Per-character times from espeak's word events: a word lasts until the next one starts."""
    starts = [0.0] * len(text)
    ends = [0.0] * len(text)
    chars = list(text)
    spans = sorted(words, key=lambda w: w.sample)
    for n, word in enumerate(spans):
        begin = word.sample / rate
        finish = (spans[n + 1].sample if n + 1 < len(spans) else total) / rate
        for c in range(max(word.start_char, 0), min(word.start_char + word.length, len(text))):
            starts[c], ends[c] = begin, finish
    # Characters between words (spaces, punctuation) take the time of the gap before the next word.
    for c in range(len(text)):
        if ends[c] == 0.0 and c > 0:
            starts[c] = ends[c] = ends[c - 1]
    return Alignment(characters=chars, starts=starts, ends=ends)


def speak_offline(text: str, voice: str = "en-us", words_per_minute: int = 165, pitch: int = 50) -> SpokenAudio:
    """Speak ``text`` with espeak-ng: mono float32 at espeak's rate (22,050 Hz) with word timing."""
    engine = _get_engine()
    with engine.lock:
        pcm, words = engine.speak(text, voice, words_per_minute, pitch)
    samples = pcm.astype(np.float32) / 32768.0
    alignment = _word_alignment(text, words, len(pcm), engine.sample_rate)
    return SpokenAudio(samples=samples, sample_rate=engine.sample_rate, alignment=alignment)
