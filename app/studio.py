"""The template studio (``/studio``): make a template by pointing at the video.

A person signs in once with an API key (a session cookie follows), uploads a recording or names
one at an allowed location, scrubs it (frames and waveform rendered here, cached), draws boxes,
marks voice windows, and sees every change checked by the code ``create-template`` runs
(``loom.authoring``). Save prepares and stores the template exactly as ``create-template`` does;
"try" renders one recipient in this process and plays it. Nothing works without a key: the page,
its assets and every route answer 401.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from app.studio_session import COOKIE, StudioSessions, studio_caller
from loom import storage
from loom.errors import InputError
from loom.input_policy import InputPolicy
from loom.settings import get_settings
from loom.uris import strip_file_scheme

STATIC = Path(__file__).parent / "static" / "studio"
UPLOAD_PATH = "/studio/api/uploads"
VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".ts", ".mts"}

Caller = Annotated[str, Depends(studio_caller)]


def _bad(field: str, problem: str, fix: str, code: int = status.HTTP_422_UNPROCESSABLE_CONTENT) -> HTTPException:
    return HTTPException(code, detail=InputError(field, problem, fix).line())


def _uploads() -> Path:
    home = storage.home()
    if storage.is_remote(home):
        raise _bad("LOOM_HOME", "is not a local folder: the studio keeps uploads on this server", "run the studio with a local LOOM_HOME")
    folder = Path(strip_file_scheme(home)) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _recording(value: str) -> str:
    """A recording the caller may use: held to the input policy (uploads live under $LOOM_HOME)."""
    try:
        location = InputPolicy.from_settings().check("recording", value)
    except InputError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=exc.line()) from None
    if "://" in location or not os.path.isfile(location):
        raise _bad("recording", "is not a video file on this server", "upload it, or give a path under $LOOM_HOME")
    return location


def _described(location: str) -> dict[str, Any]:
    """What the page needs of a recording; a file the engine cannot use is a 422 with one line."""
    from loom.media.scrub import video_info

    try:
        info = video_info(location)
    except InputError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=InputError("recording", exc.problem, exc.fix).line()) from None
    return {
        "recording": location,
        "name": re.sub(r"^[0-9a-f]{12}-", "", os.path.basename(location)),  # without the upload's own prefix
        "duration": info.duration,
        "fps": float(info.frame_rate),
        "frames": info.frame_count,
        "width": info.width,  # the frames as decoded: the template's fractions are of these
        "height": info.height,
        "has_audio": info.has_audio,
    }


class Background:
    """Work a page waits on (preparing a template, trying a recipient): one thread each, polled."""

    def __init__(self) -> None:
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def start(self, kind: str, work: Any) -> str:
        job_id = uuid.uuid4().hex
        with self._lock:
            self._jobs[job_id] = {"id": job_id, "kind": kind, "status": "running", "started": time.time()}

        def run() -> None:
            try:
                result = work()
                update = {"status": "done", **(result or {})}
            except InputError as exc:
                update = {"status": "failed", "error": exc.line()}
            except Exception as exc:  # shown to the person who pressed the button
                update = {"status": "failed", "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            with self._lock:
                self._jobs[job_id].update(update, seconds=round(time.time() - self._jobs[job_id]["started"], 2))

        threading.Thread(target=run, name=f"studio-{kind}", daemon=True).start()
        return job_id

    def get(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            if job_id not in self._jobs:
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such studio job")
            return dict(self._jobs[job_id])


def _output_url(path: str | None) -> str | None:
    return f"/studio/api/output?path={path}" if path else None


def studio_router() -> APIRouter:
    router = APIRouter(prefix="/studio", include_in_schema=False)
    background = Background()

    @router.get("", response_class=HTMLResponse)
    def page(request: Request) -> Response:
        sessions: StudioSessions = request.app.state.studio_sessions
        if sessions.who(request.cookies.get(COOKIE)) is None:
            return HTMLResponse((STATIC / "signin.html").read_text(), status_code=status.HTTP_401_UNAUTHORIZED)
        return HTMLResponse((STATIC / "index.html").read_text())

    @router.post("/session")
    def sign_in(request: Request, key: Annotated[str, Body(embed=True, max_length=500)]) -> Response:
        cookie = request.app.state.studio_sessions.open(key)
        if cookie is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="key: not one of LOOM_API_KEYS (check the key)")
        response = JSONResponse({"ok": True})
        response.set_cookie(COOKIE, cookie, max_age=request.app.state.studio_sessions.lifetime_s, httponly=True, samesite="strict", path="/studio")
        return response

    @router.get("/assets/{name}")
    def asset(name: str, who: Caller) -> FileResponse:
        if not re.fullmatch(r"[a-z0-9-]+\.(js|css)", name) or not (STATIC / name).is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such asset")
        return FileResponse(STATIC / name)

    @router.post("/api/uploads")
    async def upload(request: Request, who: Caller, name: Annotated[str, Query(max_length=200)] = "recording.mp4") -> dict[str, Any]:
        """The request body is the file, streamed to $LOOM_HOME/uploads under the size cap."""
        suffix = Path(name).suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise _bad("file", f"{suffix or 'a file without an extension'} is not a video type the studio takes", f"upload one of {', '.join(sorted(VIDEO_SUFFIXES))}", 415)
        upload_mb = get_settings().studio_upload_mb
        limit = upload_mb * 2**20
        too_big = _bad("file", f"is over {upload_mb} MB", f"upload a recording under {upload_mb} MB", 413)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_big
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).stem)[:60].strip("-.") or "recording"
        target = _uploads() / f"{uuid.uuid4().hex[:12]}-{stem}{suffix}"
        written = 0
        try:
            with open(target, "wb") as out:
                async for chunk in request.stream():
                    written += len(chunk)
                    if written > limit:
                        raise too_big
                    out.write(chunk)
            if written == 0:
                raise _bad("file", "is empty", "choose the recording's file")
            return _described(str(target))
        except BaseException:
            target.unlink(missing_ok=True)  # nothing half-uploaded or unusable stays behind
            raise

    @router.post("/api/sheet-rows")
    async def sheet_rows(request: Request, who: Caller, name: Annotated[str, Query(max_length=200)] = "sheet.csv") -> dict[str, Any]:
        """The first rows of a sheet (CSV or XLSX, the body), to try a template on a real row."""
        from loom.recipients import MAX_SHEET_BYTES, read_sheet_head

        suffix = Path(name).suffix.lower()
        if suffix not in {".csv", ".xlsx", ".xlsm"}:
            raise _bad("sheet", f"{suffix or 'a file without an extension'} is not a sheet", "upload a CSV or XLSX file", 415)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_SHEET_BYTES:
                raise _bad("sheet", f"is over {MAX_SHEET_BYTES // 2**20} MB", "try it on a smaller sheet", 413)
        target = _uploads() / "sheets" / f"{uuid.uuid4().hex[:12]}{suffix}"
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(body)
        try:
            head = read_sheet_head(str(target), rows=50)
        except InputError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=exc.line()) from None
        finally:
            target.unlink(missing_ok=True)
        rows = [{k: "" if v is None else str(v) for k, v in row.values.items() if k != "__formula__"} for row in head.rows]
        return {"columns": head.columns, "rows": rows, "warnings": head.warnings}

    @router.post("/api/recordings")
    def name_recording(who: Caller, recording: Annotated[str, Body(embed=True, max_length=2048)]) -> dict[str, Any]:
        return _described(_recording(recording))

    @router.get("/api/frame")
    def frame(who: Caller, recording: str, t: float = 0.0, w: int = 640) -> Response:
        from loom.media.scrub import frame_jpeg

        return Response(frame_jpeg(_recording(recording), t, w), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @router.get("/api/waveform")
    def wave(who: Caller, recording: str, bins: int = 800) -> dict[str, Any]:
        from loom.media.scrub import waveform

        return waveform(_recording(recording), bins)

    @router.get("/api/media")
    def media(who: Caller, recording: str) -> FileResponse:
        return FileResponse(_recording(recording))  # byte ranges: the page's player seeks

    @router.post("/api/validate")
    def validate(who: Caller, template: Annotated[dict[str, Any], Body(embed=True)]) -> dict[str, Any]:
        from loom.authoring import check_template

        duration = None
        if template.get("base_video_path"):
            duration = _described(_recording(str(template["base_video_path"])))["duration"]
        checked, problems = check_template(template, duration)
        return {
            "ok": not problems,
            "problems": [p.__dict__ for p in problems],
            "placeholders": checked.placeholders() if checked else [],
            "image_placeholders": sorted(checked.image_keys()) if checked else [],
        }

    @router.post("/api/track")
    def track(
        who: Caller, template: Annotated[dict[str, Any], Body()], segment_id: Annotated[str, Body(max_length=128)]
    ) -> dict[str, Any]:
        """Run the engine's tracking for one visual segment; the boxes as fractions, per frame."""
        from loom.authoring import check_template
        from loom.media.scrub import video_info
        from loom.visual.tracking import track_segment

        recording = _recording(str(template.get("base_video_path", "")))
        checked, problems = check_template(template, video_info(recording).duration)
        if checked is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=problems[0].message)
        segment = next((s for s in checked.visual_segments if s.id == segment_id), None)
        if segment is None:
            raise _bad("segment_id", f"no visual segment {segment_id!r}", "save the segment first")
        info = video_info(recording)
        out = _uploads() / ".tracks" / f"{uuid.uuid4().hex}.json"
        out.parent.mkdir(exist_ok=True)
        result = track_segment(recording, info, segment, str(out))
        out.unlink(missing_ok=True)
        fw, fh = result.frame_width, result.frame_height
        return {
            "first_frame": result.first_frame,
            "fps": float(info.frame_rate),
            "boxes": [[x / fw, y / fh, w / fw, h / fh] for x, y, w, h in result.boxes],
            "lost": result.lost,
            "flagged": sum(result.lost),
        }

    @router.post("/api/templates")
    def save(who: Caller, template: Annotated[dict[str, Any], Body(embed=True)]) -> dict[str, Any]:
        """Check, then prepare and store in the background (as create-template does); poll /api/jobs/{id}."""
        from loom.authoring import check_template, store_template

        recording = _recording(str(template.get("base_video_path", "")))
        checked, problems = check_template({**template, "base_video_path": recording}, _described(recording)["duration"])
        if checked is None:
            return JSONResponse({"ok": False, "problems": [p.__dict__ for p in problems]}, status_code=422)  # type: ignore[return-value]

        def work() -> dict[str, Any]:
            stored = store_template(checked)
            return {"template_id": checked.id, "uri": stored.uri, "warnings": stored.warnings}

        return {"ok": True, "job": background.start("prepare", work), "template_id": checked.id}

    @router.post("/api/try")
    def try_recipient(
        who: Caller, template_id: Annotated[str, Body(max_length=128)], values: Annotated[dict[str, Any], Body()]
    ) -> dict[str, Any]:
        """Render one recipient of a stored template in this process; poll /api/jobs/{id}."""
        from loom.pipeline import personalize
        from loom.template import check_safe_id, load_template

        try:
            template = load_template(check_safe_id(template_id, "template_id"))
        except InputError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=exc.line()) from None
        out = storage.join(storage.home(), "outputs", "studio", template.id)

        def work() -> dict[str, Any]:
            result = personalize(template, values, out)
            return {
                "video_url": _output_url(result.output_uri),
                "preview_url": _output_url(result.preview_uri),
                "warnings": result.warnings,
            }

        return {"job": background.start("try", work)}

    @router.get("/api/jobs/{job_id}")
    def job(who: Caller, job_id: str) -> dict[str, Any]:
        return background.get(job_id)

    @router.get("/api/output")
    def output(who: Caller, path: str) -> FileResponse:
        outputs = os.path.realpath(os.path.join(strip_file_scheme(storage.home()), "outputs"))
        real = os.path.realpath(path)
        if not real.startswith(outputs + os.sep) or not os.path.isfile(real):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such output")
        return FileResponse(real)

    @router.post("/api/transcribe")
    def transcribe(
        who: Caller, recording: Annotated[str, Body(max_length=2048)], phrase: Annotated[str, Body(max_length=300)] = ""
    ) -> dict[str, Any]:
        """Words and their times, from ElevenLabs speech-to-text (once per recording's content), and
        the window around ``phrase`` where it was said."""
        from loom.errors import ServiceError
        from loom.voice.transcribe import find_words, transcribe_recording

        try:
            words = transcribe_recording(_recording(recording))
        except InputError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=exc.line()) from None
        except ServiceError as exc:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, detail=str(exc)) from None
        window = find_words(words, phrase) if phrase else None
        return {"words": [w.__dict__ for w in words], "window": list(window) if window else None}

    return router

