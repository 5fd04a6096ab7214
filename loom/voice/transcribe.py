"""Where words were said in a recording: ElevenLabs speech-to-text with word timestamps, asked
once per recording's content (the answer is kept under ``$LOOM_HOME/transcripts``). The studio
uses it to propose a voice window around the words a person names ("find it")."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from loom import storage
from loom.errors import InputError, ServiceError

STT_MODEL = "scribe_v2"


@dataclass
class Word:
    text: str
    start: float
    end: float


def _audio_for_upload(uri: str) -> bytes:
    """The recording's audio as 16 kHz mono WAV: a fraction of the video's bytes to send."""
    import io
    import wave

    import av
    import numpy as np

    chunks = []
    with storage.local_path(uri) as path, av.open(str(path)) as container:
        if not container.streams.audio:
            raise InputError("recording", "has no audio track to transcribe", "mark the window on the waveform instead")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        for frame in container.decode(container.streams.audio[0]):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
    pcm = np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(1, np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(pcm.tobytes())
    return buffer.getvalue()


def transcribe_recording(uri: str) -> list[Word]:
    """Every spoken word of the recording with its start and end (seconds)."""
    from loom.voice.config import configured_elevenlabs
    from loom.voice.elevenlabs import make_client

    config = configured_elevenlabs()
    if config.api_key is None:
        raise InputError("ELEVENLABS_API_KEY", "is not set, so the recording cannot be transcribed", "mark the window on the waveform, or set the key")
    digest = storage.file_digest(uri)
    cached = storage.join(storage.home(), "transcripts", f"{digest}-{STT_MODEL}.json")
    if storage.exists(cached):
        return [Word(**w) for w in json.loads(storage.read_text(cached))]
    client = make_client(config)
    try:
        result = client.speech_to_text.convert(
            model_id=STT_MODEL, file=("audio.wav", _audio_for_upload(uri), "audio/wav"), timestamps_granularity="word"
        )
    except Exception as exc:  # the SDK's ApiError, httpx errors: one line for the page
        raise ServiceError(f"ElevenLabs speech-to-text failed ({type(exc).__name__}: {str(exc)[:200]})") from None
    words = [
        Word(text=w.text.strip(), start=float(w.start or 0.0), end=float(w.end or 0.0))
        for w in (result.words or [])
        if getattr(w, "type", "word") == "word" and w.text.strip()
    ]
    storage.write_text(cached, json.dumps([asdict(w) for w in words]))
    return words


def find_words(words: list[Word], phrase: str, margin_s: float = 0.15) -> tuple[float, float] | None:
    """The window around the first run of ``words`` that spells ``phrase`` (case and punctuation
    ignored), widened by ``margin_s`` on each side; None if it was not said."""
    wanted = [re.sub(r"\W+", "", p.lower()) for p in phrase.split() if re.sub(r"\W+", "", p)]
    said = [re.sub(r"\W+", "", w.text.lower()) for w in words]
    for i in range(len(said) - len(wanted) + 1):
        if wanted and said[i : i + len(wanted)] == wanted:
            return max(0.0, words[i].start - margin_s), words[i + len(wanted) - 1].end + margin_s
    return None
