"""A fake Sync Labs API v2 on 127.0.0.1, speaking the real request and response shapes.

``POST /v2/generate`` (``x-api-key``; JSON ``model``, ``input`` = one video + one audio by URL,
``options``, optional ``outputFileName`` / ``webhookUrl``) answers 201 with a generation in
``PENDING``; each ``GET /v2/generate/{id}`` moves it on: ``PROCESSING``, then ``COMPLETED`` with
``outputUrl``. Like the real service it fetches the input URLs itself. Its "lip-sync" inverts
every pixel of every frame, so a test can see which parts of the result the client kept.
It also serves test files at ``/files/<n>`` (standing in for signed storage URLs).
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from fractions import Fraction
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import av

from loom.media.muxing import mux_frames
from testkit.http import serving

MODELS = {"sync-3", "lipsync-2", "lipsync-2-pro", "lipsync-1.9.0-beta", "react-1"}


class FakeSyncLabs:
    def __init__(self, api_key: str, workdir: Path) -> None:
        self.api_key = api_key
        self.workdir = workdir
        self.jobs: dict[str, dict] = {}
        self.requests: list[dict] = []
        self.files: dict[str, Path] = {}
        self.fail_next: list[int] = []  # status codes to answer the next requests with (retry tests)
        self.base_url = ""

    def serve_file(self, uri: str) -> str:
        name = str(len(self.files))
        self.files[name] = Path(uri)
        return f"{self.base_url}/files/{name}"

    # ---------------------------------------------------------------- behaviour

    def create(self, body: dict) -> tuple[int, dict]:
        if not isinstance(body.get("model"), str) or body["model"] not in MODELS:
            return 400, {"message": f"model must be one of {sorted(MODELS)}"}
        inputs = body.get("input")
        if not isinstance(inputs, list) or not all(isinstance(i, dict) and "type" in i and "url" in i for i in inputs):
            return 400, {"message": "input must be an array of {type, url} objects"}
        kinds = sorted(i["type"] for i in inputs)
        if kinds != ["audio", "video"]:
            return 400, {"message": "input must include one video and one audio input"}
        if "options" in body and not isinstance(body["options"], dict):
            return 400, {"message": "options must be an object"}
        job = {
            "id": str(uuid.uuid4()),
            "createdAt": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "status": "PENDING",
            "model": body["model"],
            "input": inputs,
            "webhookUrl": body.get("webhookUrl"),
            "options": body.get("options", {}),
            "outputUrl": None,
            "outputDuration": None,
            "error": None,
        }
        self.jobs[job["id"]] = job
        return 201, job

    def advance(self, job: dict) -> None:
        if job["status"] == "PENDING":
            job["status"] = "PROCESSING"
        elif job["status"] == "PROCESSING":
            urls = {i["type"]: i["url"] for i in job["input"]}
            if "reject" in urls["audio"]:
                job["status"], job["error"] = "REJECTED", "no face detected in the video"
                return
            video = self.workdir / f"{job['id']}-in.mp4"
            audio = self.workdir / f"{job['id']}-in.wav"
            urllib.request.urlretrieve(urls["video"], video)
            urllib.request.urlretrieve(urls["audio"], audio)
            with av.open(str(audio)) as a:  # the audio must be real audio
                assert a.streams.audio
            out = self.workdir / f"{job['id']}.mp4"
            job["outputDuration"] = _invert_video(video, out)
            job["status"] = "COMPLETED"
            job["outputUrl"] = f"{self.base_url}/outputs/{job['id']}.mp4"


def _invert_video(src: Path, dst: Path) -> float:
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        rate = Fraction(vin.average_rate)
        vs = out.add_stream("libx264", rate=rate)
        vs.width, vs.height = vin.codec_context.width, vin.codec_context.height
        vs.pix_fmt = "yuv420p"
        vs.options = {"crf": "12", "preset": "veryfast"}
        n = 0

        def inverted() -> Iterator[av.VideoFrame]:
            nonlocal n
            for frame in inp.decode(vin):
                rgb = 255 - frame.to_ndarray(format="rgb24")
                f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                f.pts, f.time_base = n, 1 / rate
                n += 1
                yield f

        mux_frames(out, vs, inverted())
    return float(n / rate)


def _handler(fake: FakeSyncLabs) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _send(self, status: int, payload: dict | bytes, content_type: str = "application/json") -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self, body: dict | None = None) -> bool:
            fake.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})
            if fake.fail_next:
                self._send(fake.fail_next.pop(0), {"message": "temporarily unavailable"})
                return False
            if self.headers.get("x-api-key") != fake.api_key:
                self._send(401, {"message": "Unauthorized: invalid API key"})
                return False
            return True

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", 0))
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                self._send(400, {"message": "body must be JSON"})
                return
            if self.path != "/v2/generate":
                self._send(404, {"message": "not found"})
                return
            if self._record(body):
                self._send(*fake.create(body))

        def do_GET(self) -> None:  # noqa: N802
            if self.path.startswith("/files/") and self.path[7:] in fake.files:
                self._send(200, fake.files[self.path[7:]].read_bytes(), "application/octet-stream")
                return
            if self.path.startswith("/outputs/"):
                path = fake.workdir / self.path[len("/outputs/") :]
                if path.exists():
                    self._send(200, path.read_bytes(), "video/mp4")
                else:
                    self._send(404, {"message": "not found"})
                return
            if not self.path.startswith("/v2/generate/"):
                self._send(404, {"message": "not found"})
                return
            if not self._record():
                return
            job = fake.jobs.get(self.path.rsplit("/", 1)[-1])
            if job is None:
                self._send(404, {"message": "generation not found"})
                return
            fake.advance(job)
            self._send(200, job)

    return Handler


@contextlib.contextmanager
def running_fake_synclabs(api_key: str, workdir: Path) -> Iterator[FakeSyncLabs]:
    fake = FakeSyncLabs(api_key, workdir)
    with serving(_handler(fake)) as server:
        fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        yield fake
