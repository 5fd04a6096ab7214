"""A fake ElevenLabs API on 127.0.0.1 for tests: the real routes, JSON and multipart shapes.

It speaks what the ``elevenlabs`` SDK 2.78 sends and parses:

- ``POST /v1/voices/add`` (multipart: ``name``, ``files`` repeated, ``remove_background_noise``,
  ``description``, ``labels``) -> ``{"voice_id", "requires_verification"}``
- ``POST /v1/text-to-speech/{voice_id}?output_format=pcm_24000`` (JSON body) -> raw audio bytes
- ``POST /v1/text-to-speech/{voice_id}/with-timestamps`` -> ``{"audio_base64", "alignment",
  "normalized_alignment"}`` with per-character times
- ``GET /v1/voices/{voice_id}`` -> the voice, or 404
- ``POST /v1/speech-to-text`` (multipart: ``file``, ``model_id``, ``timestamps_granularity``) ->
  ``{"language_code", "text", "words": [{"text", "start", "end", "type", ...}]}``: the words of
  ``heard`` (set by a test: what the fake "hears" in any audio), with spacing entries between

Auth is the ``xi-api-key`` header. Errors use ElevenLabs' body ``{"detail": {"status", "message"}}``
(an exhausted quota is a 401 with status ``quota_exceeded``; an unknown voice a 404 with
``voice_not_found``). Faults can be queued: ``fail_next(429, headers={"Retry-After": "1"})``.
Like a real plan it can be slow and capped: ``latency_s`` per text-to-speech call, and beyond
``max_concurrent`` calls in flight it answers 429 ``too_many_concurrent_requests`` (with
``Retry-After``); ``peak_concurrency`` is the most calls it ever saw at once (refused ones
included) and ``concurrency_refusals`` how many it refused.
Every request is recorded (method, path, query, headers, JSON or form fields, uploaded files).
Audio is made to order: ``pcm_<rate>`` as 16-bit little-endian mono, ``wav_<rate>`` as a WAV file,
``mp3_<rate>_<kbps>`` / ``opus_48000_<kbps>`` / ``ulaw_8000`` encoded by FFmpeg (PyAV);
the sound is a speech-like buzz (voiced vowels, noisy consonants, pauses at spaces) whose length
follows the text, with 0.1 s of silence at each end.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import json
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np

CHAR_S = 0.065  # seconds of speech per character
EDGE_SILENCE_S = 0.1


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: dict | None = None
    form: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class Fault:
    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)
    path_contains: str = ""
    text_contains: str = ""  # only a request whose JSON text holds this (one recipient's line)
    delay_s: float = 0.0  # answer this late (a hung service); status 0 = then answer normally


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out and hung up is expected here


def speech_like(text: str, rate: int) -> tuple[np.ndarray, list[float], list[float]]:
    """Int16 mono audio for ``text`` and per-character start and end times."""
    rng = np.random.default_rng(len(text))
    pieces = [np.zeros(int(EDGE_SILENCE_S * rate))]
    starts, ends = [], []
    t = EDGE_SILENCE_S
    n = int(CHAR_S * rate)
    time = np.arange(n) / rate
    envelope = np.sin(np.pi * np.arange(n) / n) ** 0.5
    for i, ch in enumerate(text):
        if ch.isspace() or not ch.isalnum():
            piece = np.zeros(n // 2)
        elif ch.lower() in "aeiouy":
            f0 = 140 + 20 * np.sin(i)
            piece = sum(np.sin(2 * np.pi * f0 * k * time) / k for k in range(1, 6)) * 0.25 * envelope
        else:
            piece = rng.normal(0, 0.08, n) * envelope + 0.1 * np.sin(2 * np.pi * 140 * time) * envelope
        starts.append(round(t, 4))
        t += piece.size / rate
        ends.append(round(t, 4))
        pieces.append(piece)
    pieces.append(np.zeros(int(EDGE_SILENCE_S * rate)))
    audio = np.concatenate(pieces)
    return np.clip(audio * 32767 * 0.8, -32768, 32767).astype("<i2"), starts, ends


def encode(audio: np.ndarray, output_format: str) -> bytes | None:
    """``audio`` (int16 mono at the format's rate) in the asked format: pcm, wav, mp3, opus, ulaw, alaw."""
    codec, _, rest = output_format.partition("_")
    numbers = [int(n) for n in rest.split("_") if n.isdigit()]
    rate = numbers[0] if numbers else 0
    bitrate = numbers[1] * 1000 if len(numbers) > 1 else 0
    if codec == "pcm":
        return audio.tobytes()
    if codec == "wav":
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(audio.tobytes())
        return buffer.getvalue()
    if codec in ("mp3", "opus"):
        return _compressed(audio, rate, bitrate, "mp3" if codec == "mp3" else "ogg", "libmp3lame" if codec == "mp3" else "libopus")
    if codec in ("ulaw", "alaw"):
        return _compressed(audio, rate, 0, "mulaw" if codec == "ulaw" else "alaw", f"pcm_{'mulaw' if codec == 'ulaw' else 'alaw'}")
    return None


def _compressed(audio: np.ndarray, rate: int, bitrate: int, container_format: str, codec: str) -> bytes:
    """Encode with FFmpeg (PyAV), as the real service would."""
    import av

    from loom.media.muxing import mux_frames

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        if bitrate:
            stream.bit_rate = bitrate
        frame_size = stream.codec_context.frame_size or 1024
        fmt = stream.codec_context.format.name
        resampler = av.AudioResampler(format=fmt, layout="mono", rate=rate)
        def frames() -> Iterator[av.AudioFrame]:
            for start in range(0, audio.size, frame_size):
                chunk = np.zeros((1, frame_size), np.int16)
                piece = audio[start : start + frame_size]
                chunk[0, : piece.size] = piece
                frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
                frame.sample_rate = rate
                frame.pts = start
                yield from resampler.resample(frame)

        mux_frames(out, stream, frames())
    return buffer.getvalue()


class FakeElevenLabs:
    """Run with ``with FakeElevenLabs(api_key="k") as fake: ... fake.base_url ...``."""

    def __init__(self, api_key: str = "test-key", voices: tuple[str, ...] = ("presenter-voice",)) -> None:
        self.api_key = api_key
        self.voices: dict[str, str] = {v: v for v in voices}
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.quota_left: int | None = None  # characters; None = unlimited
        self.heard: list[tuple[str, float, float]] = []  # speech-to-text: (word, start, end) in any audio
        self.latency_s = 0.0  # seconds each text-to-speech call takes
        self.max_concurrent: int | None = None  # text-to-speech calls allowed in flight; None = no cap
        self.in_flight = 0
        self.peak_concurrency = 0
        self.concurrency_refusals = 0
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeElevenLabs:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # faults
    def fail_next(self, status: int, body: dict | None = None, headers: dict[str, str] | None = None,
                  times: int = 1, path_contains: str = "", text_contains: str = "") -> None:  # fmt: skip
        body = body or {"detail": {"status": "error", "message": f"fake failure {status}"}}
        with self._lock:
            self.faults.extend(Fault(status, body, dict(headers or {}), path_contains, text_contains) for _ in range(times))

    def hang_next(self, seconds: float, times: int = 1) -> None:
        """Answer the next requests only after ``seconds`` (clients with a shorter timeout give up)."""
        with self._lock:
            self.faults.extend(Fault(0, {}, delay_s=seconds) for _ in range(times))

    def rate_limit(self, times: int = 1, retry_after: str = "1") -> None:
        self.fail_next(429, {"detail": {"status": "too_many_concurrent_requests",
                                        "message": "Too many concurrent requests."}},
                       {"Retry-After": retry_after}, times)  # fmt: skip

    def limit_concurrency(self, max_concurrent: int | None, latency_s: float = 0.0) -> None:
        """Behave like a plan that allows ``max_concurrent`` calls at once, each ``latency_s`` long;
        the counters start again."""
        with self._lock:
            self.max_concurrent, self.latency_s = max_concurrent, latency_s
            self.peak_concurrency = self.concurrency_refusals = 0

    def _enter_call(self) -> bool:
        """Count a text-to-speech call in; False (and counted as refused) beyond the cap."""
        with self._lock:
            self.in_flight += 1
            self.peak_concurrency = max(self.peak_concurrency, self.in_flight)
            if self.max_concurrent is not None and self.in_flight > self.max_concurrent:
                self.in_flight -= 1
                self.concurrency_refusals += 1
                return False
        return True

    def _leave_call(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def requests_to(self, fragment: str) -> list[Recorded]:
        return [r for r in self.requests if fragment in r.path]

    # server
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
                self._call_done()  # the call is over once its answer starts: its client may send the next one
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            counted = False

            def _call_done(self) -> None:
                if self.counted:
                    self.counted = False
                    fake._leave_call()

            def _json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
                self._send(status, json.dumps(payload).encode(), "application/json", headers)

            def _error(self, status: int, word: str, message: str) -> None:
                self._json(status, {"detail": {"status": word, "message": message}})

            def _record(self) -> Recorded:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                rec = Recorded(
                    method=self.command,
                    path=parts.path,
                    query={k: v[-1] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                )
                ctype = self.headers.get("Content-Type", "")
                if ctype.startswith("application/json") and raw:
                    rec.json = json.loads(raw)
                elif ctype.startswith("multipart/form-data"):
                    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                        f"Content-Type: {ctype}\r\n\r\n".encode() + raw
                    )
                    for part in message.iter_parts():
                        name = part.get_param("name", header="content-disposition")
                        filename = part.get_filename()
                        payload = part.get_payload(decode=True) or b""
                        if filename is not None:
                            rec.files.append((filename, payload))
                        elif name:
                            rec.form[name] = payload.decode("utf-8")
                with fake._lock:
                    fake.requests.append(rec)
                return rec

            def _authorized(self, rec: Recorded) -> bool:
                if rec.headers.get("xi-api-key") != fake.api_key:
                    self._error(401, "invalid_api_key", "Invalid API key")
                    return False
                return True

            def _fault(self, rec: Recorded) -> bool:
                with fake._lock:
                    for i, fault in enumerate(fake.faults):
                        said = str((rec.json or {}).get("text", ""))
                        if fault.path_contains in rec.path and fault.text_contains in said:
                            del fake.faults[i]
                            break
                    else:
                        return False
                if fault.delay_s:
                    time.sleep(fault.delay_s)
                if not fault.status:
                    return False
                self._json(fault.status, fault.body, fault.headers)
                return True

            def do_GET(self) -> None:  # noqa: N802
                rec = self._record()
                if self._fault(rec) or not self._authorized(rec):
                    return
                parts = rec.path.strip("/").split("/")
                if parts[:2] == ["v1", "voices"] and len(parts) == 3:
                    if parts[2] not in fake.voices:
                        return self._error(404, "voice_not_found", f"A voice with the voice_id {parts[2]} was not found.")
                    return self._json(200, {"voice_id": parts[2], "name": fake.voices[parts[2]], "category": "cloned"})
                self._json(404, {"detail": "Not Found"})

            def do_POST(self) -> None:  # noqa: N802
                rec = self._record()
                if self._fault(rec) or not self._authorized(rec):
                    return
                parts = rec.path.strip("/").split("/")
                if parts == ["v1", "voices", "add"]:
                    return self._add_voice(rec)
                if parts[:2] == ["v1", "text-to-speech"] and len(parts) in (3, 4):
                    if len(parts) == 4 and parts[3] != "with-timestamps":
                        return self._json(404, {"detail": "Not Found"})
                    if not fake._enter_call():
                        return self._json(429, {"detail": {"status": "too_many_concurrent_requests",
                                                           "message": "Too many concurrent requests."}},
                                          {"Retry-After": "1"})  # fmt: skip
                    self.counted = True
                    try:
                        if fake.latency_s:
                            time.sleep(fake.latency_s)
                        return self._speak(rec, parts[2], timestamps=len(parts) == 4)
                    finally:
                        self._call_done()
                if parts == ["v1", "speech-to-text"]:
                    return self._transcribe(rec)
                self._json(404, {"detail": "Not Found"})

            def _transcribe(self, rec: Recorded) -> None:
                missing = [f for f in ("model_id",) if not rec.form.get(f)] + ([] if rec.files else ["file"])
                if missing:
                    return self._json(422, {"detail": [{"loc": ["body", f], "msg": "field required", "type": "missing"} for f in missing]})
                words: list[dict[str, object]] = []
                for i, (text, start, end) in enumerate(fake.heard):
                    if i:
                        words.append({"text": " ", "start": words[-1]["end"], "end": start, "type": "spacing", "speaker_id": None, "logprob": 0.0})
                    words.append({"text": text, "start": start, "end": end, "type": "word", "speaker_id": None, "logprob": -0.05})
                text = " ".join(w for w, _, _ in fake.heard)
                self._json(200, {"language_code": "en", "language_probability": 0.99, "text": text, "words": words})

            def _add_voice(self, rec: Recorded) -> None:
                if not rec.form.get("name") or not rec.files:
                    return self._json(422, {"detail": [{"loc": ["body", "files"], "msg": "field required", "type": "missing"}]})
                voice_id = f"cloned{len(fake.voices):04d}"
                with fake._lock:
                    fake.voices[voice_id] = rec.form["name"]
                self._json(200, {"voice_id": voice_id, "requires_verification": False})

            def _speak(self, rec: Recorded, voice_id: str, timestamps: bool) -> None:
                text = (rec.json or {}).get("text", "")
                if not text:
                    return self._json(422, {"detail": [{"loc": ["body", "text"], "msg": "field required", "type": "missing"}]})
                if voice_id not in fake.voices:
                    return self._error(404, "voice_not_found", f"A voice with the voice_id {voice_id} was not found.")
                if fake.quota_left is not None:
                    if len(text) > fake.quota_left:
                        return self._error(401, "quota_exceeded",
                                           f"This request exceeds your quota of 10000. You have {fake.quota_left} "
                                           f"credits remaining, while {len(text)} credits are required for this request.")  # fmt: skip
                    fake.quota_left -= len(text)
                output_format = rec.query.get("output_format", "mp3_44100_128")
                try:
                    rate = int(output_format.split("_")[1])
                except (IndexError, ValueError):
                    return self._error(400, "invalid_output_format", f"unknown output_format {output_format}")
                audio, starts, ends = speech_like(text, rate)
                data = encode(audio, output_format)
                if data is None:
                    return self._error(400, "invalid_output_format", f"unknown output_format {output_format}")
                if not timestamps:
                    kind = output_format.split("_")[0]
                    content_type = {"mp3": "audio/mpeg", "wav": "audio/wav", "opus": "audio/ogg"}.get(kind, "audio/basic")
                    return self._send(200, data, content_type)
                alignment = {
                    "characters": list(text),
                    "character_start_times_seconds": starts,
                    "character_end_times_seconds": ends,
                }
                self._json(200, {
                    "audio_base64": base64.b64encode(data).decode(),
                    "alignment": alignment,
                    "normalized_alignment": alignment,
                })  # fmt: skip

        return Handler
