"""The steps of one recipient, as plain functions, and their one composition.

The recipient flow (``flows/recipient.py``) wraps each step in a task and runs them in the same
order; the CLI calls ``personalize`` directly so it never starts a Prefect server. A test holds
both to the same output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel, Field

from loom import __version__, costs, plugins, storage
from loom.allocator import keep_freed_memory
from loom.edits import AudioInsert, PatchSetRef
from loom.errors import InputError
from loom.input_policy import InputPolicy
from loom.links import browser_url, share_page_url
from loom.lipsync.notice import warn_no_checkpoint
from loom.media.concealment import Concealment
from loom.media.patches import release
from loom.prepared import PreparedTemplate
from loom.recipients import check_row, recipient_key, render_line
from loom.settings import get_settings
from loom.shares import create_share, recipient_name
from loom.template import Template, VisualSegment, VoiceSegment, load_template
from loom.uris import strip_file_scheme

log = logging.getLogger("loom")

T_co = TypeVar("T_co", covariant=True)

# Bump when prepare's outputs change meaning, so old prepared templates are not reused.
PREPARE_CODE_VERSION = "5"


class RecipientResult(BaseModel):
    """What was made for one recipient, and from what (the lineage record)."""

    template_id: str
    template_version: str
    recipient_key: str
    output_uri: str
    preview_uri: str | None = None
    record_uri: str | None = None
    values: dict[str, str] = Field(default_factory=dict)
    voice: list[AudioInsert] = Field(default_factory=list)
    patches: list[PatchSetRef] = Field(default_factory=list)
    render: dict[str, object] = Field(default_factory=dict)
    lipsync_checkpoint: str | None = None
    warnings: list[str] = Field(default_factory=list)
    concealed: list[Concealment] = Field(
        default_factory=list, description="what decoding the damaged recording skipped (stream, time, count)"
    )
    software_version: str = __version__
    seconds: float = 0.0
    poster_uri: str | None = None
    gif_uri: str | None = None
    email_uri: str | None = None
    share_token: str | None = None
    links: dict[str, str] = Field(
        default_factory=dict, description="what a browser opens: video, preview, poster, gif, email, share (signed, expiring)"
    )
    cost: costs.RecipientCost | None = None


# ---------------------------------------------------------------- template (once per version)


def base_video_digest(uri: str) -> str:
    """SHA-256 of the base video, remembered per (path, size, mtime_ns) under ``$LOOM_HOME/digests``
    so a later process does not re-read a long recording; remote or unsure: hashed again."""
    if not storage.is_remote(uri):
        local = Path(strip_file_scheme(uri))
        if local.is_dir():
            raise InputError("base_video_path", f"{uri} is a folder", "give the video file inside it")
        if not local.exists():
            raise InputError("base_video_path", f"no video at {uri}", "check the path or URI")
    if storage.is_remote(uri) or storage.is_remote(storage.home()):
        return storage.file_digest(uri)
    path = Path(uri).resolve()
    try:
        stat = path.stat()
    except OSError:
        return storage.file_digest(uri)
    stamp = f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}"
    memo = Path(storage.home()) / "digests" / f"{hashlib.sha256(stamp.encode()).hexdigest()[:32]}.txt"
    try:
        saved_stamp, digest = memo.read_text().split("\n")[:2]
        if saved_stamp == stamp and len(digest) == 64:
            return digest
    except (OSError, ValueError):
        pass
    digest = storage.file_digest(uri)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        partial = memo.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(f"{stamp}\n{digest}\n")
        partial.replace(memo)
    except OSError:
        pass  # a read-only home only costs the hash next time
    return digest


def template_version(template: Template) -> str:
    """The prepared template's and every row key's version: the base video's bytes, the template's
    video-relevant content and the preparing code; nothing else."""
    video_digest = base_video_digest(template.base_video_path)
    payload = f"{video_digest}:{template.video_hash()}:{PREPARE_CODE_VERSION}"
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def prepared_root(template: Template, version: str) -> str:
    return storage.join(storage.home(), "prepared", template.id, version)


def cut_times(template: Template) -> list[float]:
    times = {t for s in template.voice_segments for t in (s.start_time, s.end_time)}
    times |= {t for s in template.visual_segments for t in (s.start_time, s.end_time)}
    return sorted(times)


def load_prepared(template: Template) -> PreparedTemplate | None:
    if not storage.exists(template.base_video_path):
        raise InputError("base_video_path", f"no video at {template.base_video_path}", "check the path or URI")
    version = template_version(template)
    uri = storage.join(prepared_root(template, version), "prepared.json")
    if storage.exists(uri):
        prepared = PreparedTemplate.model_validate_json(storage.read_bytes(uri))
        # same version, but the name or the recording's location may have changed since
        return prepared.model_copy(update={"template": template})
    return None


def prepare_template(template: Template) -> PreparedTemplate:
    """Everything recipient-independent, once per template version (stored and reused)."""
    cached = load_prepared(template)
    if cached is not None:
        return cached
    # imported only when preparing: a later recipient's process does not load them
    from loom.lipsync.faces import detect_faces
    from loom.media.prepare import prepare_media
    from loom.media.probe import probe_video
    from loom.visual.plates import make_clean_plate
    from loom.visual.tracking import track_segment

    version = template_version(template)
    root = prepared_root(template, version)
    source = probe_video(template.base_video_path)
    template.check_against_video(source.duration)
    media = prepare_media(template.base_video_path, cut_times(template), root)
    prepared = PreparedTemplate(
        template=template,
        version=version,
        root=root,
        source=media.source,
        video=media.video,
        working_video_uri=media.working_video_uri,
        mezzanine=media.mezzanine,
        mezzanine_reason=media.mezzanine_reason,
        audio_uri=media.audio_uri,
        audio_sample_rate=media.audio_sample_rate,
        audio_channels=media.audio_channels,
        concealed=media.concealed,
    )
    prepared.qa.extend(c.line() for c in media.concealed)

    def faces_of_voice_windows() -> list[tuple[str, str, list[str]]]:
        found = []
        for seg in template.voice_segments:
            if not seg.lipsync:
                continue
            first, stop = prepared.segment_frames(seg.start_time, seg.end_time)
            uri = storage.join(root, "faces", f"{seg.id}.json")
            found.append((seg.id, uri, detect_faces(prepared.working_video_uri, prepared.video, first, stop, uri).warnings))
        return found

    # Faces and boxes are independent: the faces are found on a second thread while the boxes are
    # tracked (OpenCV and the decoder release the GIL; prepare's wall time on two cores drops).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-faces") as pool:
        faces_job = pool.submit(faces_of_voice_windows)
        for seg in template.visual_segments:
            uri = storage.join(root, "tracks", f"{seg.id}.json")
            track = track_segment(prepared.working_video_uri, prepared.video, seg, uri)
            prepared.tracks[seg.id] = uri
            prepared.qa.extend(track.warnings)
            if getattr(plugins.visual_effect(seg.segment_type), "replaces_content", False):
                # the original removed once per template, so recipients only draw their value over it
                plate_uri = storage.join(root, "plates", f"{seg.id}.npz")
                prepared.clean_plates[seg.id] = make_clean_plate(prepared.working_video_uri, seg, track, plate_uri)
        for seg_id, uri, warnings in faces_job.result():
            prepared.faces[seg_id] = uri
            prepared.qa.extend(warnings)
    storage.write_text(storage.join(root, "prepared.json"), prepared.model_dump_json(indent=2))
    return prepared


# ---------------------------------------------------------------- one recipient's steps


def recipient_workdir(prepared: PreparedTemplate, key: str) -> str:
    return storage.join(storage.home(), "work", prepared.template.id, prepared.version, key)


def default_output(template: Template, key: str) -> str:
    return storage.join(storage.home(), "outputs", template.id, f"{key}.mp4")


def output_uri(template: Template, key: str, out: str | None) -> str:
    """Where the video goes: ``out`` as given, ``out/<key>.mp4`` for a folder, else the default."""
    if out is None:
        return default_output(template, key)
    if not out.endswith(".mp4") and not Path(out).suffix:
        return storage.join(out, f"{key}.mp4")
    return out


def line_key(prepared: PreparedTemplate, segment: VoiceSegment, values: dict[str, str]) -> str:
    """What decides a fitted line: the prepared template, the window, the written text and the speech
    (the speech cache key: provider, voice, model, settings and spoken text)."""
    from loom.voice.speech import speech_cache_key  # the voice stack: ~0.1 s a planning process need not pay

    text, spoken = render_line(segment.template_text, values)
    speech = speech_cache_key(spoken, prepared.template.voice_id)
    payload = json.dumps([prepared.version, segment.model_dump(mode="json"), text, speech], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def line_dir(prepared: PreparedTemplate, segment: VoiceSegment, values: dict[str, str]) -> str:
    """Where a fitted line is kept: under the prepared template, named by ``line_key``, so recipients
    whose line reads the same share it and a cached result keeps pointing at a file that exists."""
    return storage.join(prepared.root, "voice", segment.id, line_key(prepared, segment, values)[:24])


def speak_line(prepared: PreparedTemplate, segment: VoiceSegment, values: dict[str, str]) -> str:
    """The provider's half of ``voice_line``: the recipient's line spoken (one request, or the speech
    cache) and kept in the speech cache, not fitted; returns its cache key. A campaign runs this for
    its rows at the pace the provider allows, apart from the local work."""
    from loom.voice.speech import synthesize_line  # loads the voice provider only when a line is spoken

    _, spoken = render_line(segment.template_text, values)
    return synthesize_line(spoken, prepared.template.voice_id).cache_key


def voice_line(prepared: PreparedTemplate, segment: VoiceSegment, values: dict[str, str]) -> AudioInsert:
    """Speak the line with the recipient's values and fit it into the segment's window."""
    # imported when a line is spoken (~0.1 s): planning, checking and the jobs API do not load them
    from loom.voice.fit import fit_line_to_window
    from loom.voice.speech import synthesize_line

    with costs.step(f"voice:{segment.id}"):
        text, spoken = render_line(segment.template_text, values)
        clip = synthesize_line(spoken, prepared.template.voice_id)
        out = storage.join(line_dir(prepared, segment, values), f"voice-{segment.id}.wav")
        insert = fit_line_to_window(clip, segment, prepared, out)
        return insert.model_copy(update={"text": text, "spoken_text": spoken})


def lipsync_wanted(prepared: PreparedTemplate, segment: VoiceSegment) -> bool:
    """Whether this window is to be lip-synced at all: lip-sync on, and a face found at prepare time."""
    return segment.lipsync and segment.id in prepared.faces


def lipsync_backend_ready() -> bool:
    """Whether a lip-sync backend can run in this process: a Wav2Lip checkpoint is configured, or
    another backend (Sync Labs, a plugin) is selected."""
    return not _wav2lip_unconfigured()


def lipsync_line(prepared: PreparedTemplate, segment: VoiceSegment, insert: AudioInsert, workdir: str) -> PatchSetRef | None:
    """Mouth patches for the window's frames, or None when lip-sync is off or unavailable."""

    if not lipsync_wanted(prepared, segment):
        return None
    if _wav2lip_unconfigured() and "loom.lipsync.engine" not in sys.modules:
        warn_no_checkpoint()  # the engine would skip too; not importing it saves torch's import
        return None
    out_uri = storage.join(workdir, f"lipsync-{segment.id}.npz")
    name = get_settings().lipsync_backend
    backend = plugins.lipsync_backend(name)
    with costs.step(f"lipsync:{segment.id}"):
        if hasattr(backend, "segment_patches"):  # a built-in's own way: patches straight from the window
            return backend.segment_patches(prepared, segment, insert, out_uri)
        from loom.lipsync.clips import clip_backend_segment  # faces and blending (~0.2 s): only for a plugin backend

        return clip_backend_segment(backend, name, prepared, segment, insert, out_uri)


def check_configured_backend() -> None:
    """Fail before any work, with one line naming the installed ones, when the configured lip-sync
    backend is not installed."""

    plugins.check_lipsync_backend(get_settings().lipsync_backend)


def _wav2lip_unconfigured() -> bool:
    settings = get_settings()
    return settings.lipsync_backend == "wav2lip" and not settings.wav2lip_checkpoint


def draw_visual(
    prepared: PreparedTemplate, segment: VisualSegment, values: dict[str, str], workdir: str, in_memory: bool = False
) -> PatchSetRef:
    """The segment's patches, as a file in ``workdir``; ``in_memory``: handed over to a render in
    this process, drawn frame by frame as it encodes (``draw_segment``)."""
    out_uri = storage.join(workdir, f"visual-{segment.id}.npz")
    value = values[segment.placeholder_key] if segment.placeholder_key else None
    effect = plugins.visual_effect(segment.segment_type)
    with costs.step(f"visual:{segment.id}"):
        if hasattr(effect, "draw"):  # text, image: the value over the clean plate, laid as the encoder asks
            return effect.draw(prepared, segment, value, out_uri, in_memory=in_memory)
        from loom.visual.effects import draw_with_effect  # tracking and drawing (~0.2 s): only for a plugin effect

        return draw_with_effect(effect, prepared, segment, value, out_uri)


def _output_stem(out_uri: str) -> str:
    """The video's URI without ``.mp4``: its preview and record are named from it."""
    return out_uri[: -len(".mp4")] if out_uri.endswith(".mp4") else out_uri


def preview_uri(out_uri: str) -> str:
    return f"{_output_stem(out_uri)}.preview.png"


def compose(
    prepared: PreparedTemplate, inserts: list[AudioInsert] | Future, patch_sets: list[PatchSetRef], out_uri: str
) -> dict[str, object]:
    """Render the video, its preview, poster and GIF; their frames are kept while rendering.
    ``inserts`` may be a ``Future`` of them (lines still being spoken): only the audio waits.
    The preview and the share assets (``loom.media.share_assets``) are made on threads as soon as
    the edited spans are encoded, while the rest of the video is muxed."""
    # the renderer and the preview (~0.25 s): imported when a video is made, not when one is planned
    from loom.media.render import render_recipient
    from loom.media.share_assets import gif_uri, make_share_assets, poster_uri, wanted_frames
    from loom.visual.preview import make_preview, preview_frames, preview_png

    # the preview's frames and the poster's and GIF's: the render keeps the ones it re-encodes
    capture: dict[int, object] = dict.fromkeys([*preview_frames(prepared), *wanted_frames(prepared)])
    told: list[tuple[int, int]] | None = None
    drawing: Future | None = None
    sharing: Future | None = None

    # bound to the recipient's cost ledger: the render calls ``encoded`` from its own thread
    @costs.bound
    def share_assets() -> object:
        with costs.step("share_assets"):
            return make_share_assets(prepared, out_uri, capture)

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="loom-preview") as pool:

        def encoded(regions: list[tuple[int, int]]) -> None:
            nonlocal told, drawing, sharing
            with contextlib.suppress(RuntimeError):  # the render already returned: made after it instead
                drawing = pool.submit(preview_png, prepared, out_uri, capture, regions, decode_output=False)
                sharing = pool.submit(share_assets)
                told = regions

        try:
            with costs.step("render"):
                report = render_recipient(prepared, inserts, patch_sets, out_uri, capture=capture, encoded=encoded)
        except BaseException:
            if sharing is not None:  # no poster or GIF of a video that was not made
                with contextlib.suppress(Exception):
                    sharing.result()
                for made in (poster_uri(out_uri), gif_uri(out_uri)):
                    storage.remove(made)
            raise
        png = drawing.result() if drawing is not None else None
        assets = sharing.result() if sharing is not None else None
    spliced = report.mode == "splice" and told == report.reencoded_spans  # what the threads saw is what was written
    if assets is None or not spliced:
        assets = share_assets()
    target = preview_uri(out_uri)
    if png is not None and spliced:
        storage.write_bytes(target, png)
        preview = target
    else:
        preview = make_preview(prepared, out_uri, target, after=capture, reencoded=report.reencoded_spans)
    return {**report.model_dump(), "preview_uri": preview, "share_assets": assets.model_dump()}


def publish(
    prepared: PreparedTemplate,
    key: str,
    values: dict[str, str],
    inserts: list[AudioInsert],
    patch_sets: list[PatchSetRef],
    render: dict[str, object],
    out_uri: str,
    started: float,
) -> RecipientResult:
    """Preview PNG and the lineage record beside the video."""
    preview = render.get("preview_uri")
    if not isinstance(preview, str):  # a render report from elsewhere (e.g. an older run): make it now
        from loom.visual.preview import make_preview  # as in compose

        preview = make_preview(prepared, out_uri, preview_uri(out_uri))
    warnings = list(prepared.qa)
    for ps in patch_sets:
        warnings.extend(str(w) for w in ps.qa.get("warnings", []) or [])

    checkpoint = None
    if get_settings().wav2lip_checkpoint:  # the engine (and torch) only when there is one to name
        from loom.lipsync.engine import checkpoint_digest  # torch (~1 s) only with a checkpoint to name

        checkpoint = checkpoint_digest()
    shared = share_video(prepared, key, values, render, out_uri)
    cost = costs.current()
    result = RecipientResult(
        template_id=prepared.template.id,
        template_version=prepared.version,
        recipient_key=key,
        output_uri=out_uri,
        preview_uri=preview,
        record_uri=f"{_output_stem(out_uri)}.json",
        values=values,
        voice=inserts,
        patches=patch_sets,
        render=render,
        lipsync_checkpoint=checkpoint,
        warnings=warnings,
        concealed=prepared.concealed,
        seconds=round(time.perf_counter() - started, 3),
        cost=cost.summary() if cost is not None else None,
        **shared,
    )
    result.links["record"] = browser_url(result.record_uri)
    if preview:
        result.links["preview"] = browser_url(preview)
    storage.write_text(result.record_uri, result.model_dump_json(indent=2))
    return result


def share_video(
    prepared: PreparedTemplate, key: str, values: dict[str, str], render: dict[str, object], out_uri: str
) -> dict[str, object]:
    """The video's share page (a new token), the email snippet, and the links a browser opens;
    the poster and GIF the render made (or, for a render report without them, made now)."""
    from loom.media.share_assets import ShareAssets, email_html, email_uri, make_share_assets

    made = render.get("share_assets")
    with costs.step("share_page"):
        if isinstance(made, dict):
            assets = ShareAssets.model_validate(made)
        else:
            assets = make_share_assets(prepared, out_uri, {})
        name = recipient_name(values)
        record = f"{_output_stem(out_uri)}.json"
        share = create_share(out_uri, name, prepared.template.id, key, assets.poster_uri, assets.gif_uri, record)
        links = {
            "video": browser_url(out_uri),
            "poster": browser_url(assets.poster_uri),
            "gif": browser_url(assets.gif_uri),
            "share": share_page_url(share.token),
        }
        email = email_uri(out_uri)
        storage.write_text(email, email_html(name, links["share"], links["gif"], assets.gif_width, assets.gif_height))
        links["email"] = browser_url(email)
    return {
        "poster_uri": assets.poster_uri,
        "gif_uri": assets.gif_uri,
        "email_uri": email,
        "share_token": share.token,
        "links": links,
    }


def checked_values(template: Template, data: dict[str, object]) -> dict[str, str]:
    """The row's values, checked; image values held to the input policy (and read from where it
    says: a relative path from its base), checked again by the reader (``loom.visual.logo``)."""
    values = check_row(template, data)
    policy = InputPolicy.for_template(template)
    for key in template.image_keys():
        values[key] = policy.check(key, values[key])
    return values


def resolve_recipient(template: Template, prepared: PreparedTemplate, data: dict[str, object]) -> tuple[dict[str, str], str]:
    values = checked_values(template, data)
    return values, recipient_key(prepared.version, values)


# ---------------------------------------------------------------- one recipient, planned and run


@dataclass(frozen=True)
class RecipientJob:
    """One recipient to make: everything its steps need, decided before any of them runs."""

    template: Template
    prepared: PreparedTemplate
    values: dict[str, str]
    key: str
    output_uri: str
    workdir: str
    started: float


def plan_recipient(template: Template, prepared: PreparedTemplate, data: dict[str, object], out: str | None) -> RecipientJob:
    """Check the row and name the recipient's outputs (its key is the template version and values)."""
    started = time.perf_counter()
    values, key = resolve_recipient(template, prepared, data)
    return RecipientJob(
        template=template,
        prepared=prepared,
        values=values,
        key=key,
        output_uri=output_uri(template, key, out),
        workdir=recipient_workdir(prepared, key),
        started=started,
    )


class Pending(Protocol[T_co]):
    """A step's result, now or later (a ``concurrent.futures.Future``, a Prefect future, a value)."""

    def result(self) -> T_co: ...


class RecipientSteps(Protocol):
    """How each step of a recipient runs: in this process (``InProcessSteps``, the CLI) or as
    Prefect tasks of a flow run (``tasks.recipient_steps.TaskSteps``). ``run_recipient`` decides
    what runs, in which order and with which inputs; the steps only decide where."""

    def lipsync_available(self, job: RecipientJob) -> bool: ...
    def voice(self, job: RecipientJob, segment: VoiceSegment) -> Pending[AudioInsert]: ...
    def draw(self, job: RecipientJob, segment: VisualSegment) -> Pending[PatchSetRef]: ...
    def lipsync(self, job: RecipientJob, segment: VoiceSegment, voice: Pending[AudioInsert]) -> Pending[PatchSetRef | None]: ...
    def compose(self, job: RecipientJob, voices: list[Pending[AudioInsert]], patch_sets: list[PatchSetRef]) -> dict[str, object]: ...
    def publish(
        self, job: RecipientJob, inserts: list[AudioInsert], patch_sets: list[PatchSetRef], render: dict[str, object]
    ) -> RecipientResult: ...


class Done(Generic[T_co]):
    """A result that is already there."""

    def __init__(self, value: T_co) -> None:
        self._value = value

    def result(self) -> T_co:
        return self._value


def run_recipient(job: RecipientJob, steps: RecipientSteps) -> RecipientResult:
    """The one composition of a recipient's steps. Voice lines and visuals start at once; the windows
    to lip-sync (wanted, with a face) wait for their line, and only when a backend can run (else
    the new voice goes over the original mouth, said once); the render waits for the patches, and
    only its audio for the voice; then the record."""
    with costs.measuring():
        return _run_steps(job, steps)


def _run_steps(job: RecipientJob, steps: RecipientSteps) -> RecipientResult:
    prepared, template = job.prepared, job.template
    voices = [steps.voice(job, seg) for seg in template.voice_segments]
    drawn = [steps.draw(job, seg) for seg in template.visual_segments]
    wanted = [(seg, voice) for seg, voice in zip(template.voice_segments, voices) if lipsync_wanted(prepared, seg)]
    synced: list[Pending[PatchSetRef | None]] = []
    if wanted and steps.lipsync_available(job):
        synced = [steps.lipsync(job, seg, voice) for seg, voice in wanted]
    elif wanted:
        warn_no_checkpoint()
    patch_sets = [ref for ref in (p.result() for p in synced) if ref is not None]
    patch_sets += [d.result() for d in drawn]
    render = steps.compose(job, voices, patch_sets)
    result = steps.publish(job, [v.result() for v in voices], patch_sets, render)
    storage.remove(job.workdir)
    return result


class InProcessSteps:
    """Every step in this process, overlapping where they can: the voice lines are spoken on a
    thread while the visuals are drawn and, unless lip-sync needs them first, while the video spans
    encode (only the audio track waits for them); the visual patches are handed to the render in
    memory and laid frame by frame beside the encoder (no patch file is written)."""

    def __init__(self) -> None:
        self._speaker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-voice")
        self._in_memory: list[str] = []

    def __enter__(self) -> InProcessSteps:
        return self

    def __exit__(self, *exc: object) -> None:
        self._speaker.shutdown(wait=True)
        release(self._in_memory)

    def lipsync_available(self, job: RecipientJob) -> bool:
        return lipsync_backend_ready()

    def voice(self, job: RecipientJob, segment: VoiceSegment) -> Future[AudioInsert]:
        # the voice step records its cost in the recipient's ledger from the speaker thread
        return self._speaker.submit(costs.bound(voice_line), job.prepared, segment, job.values)

    def draw(self, job: RecipientJob, segment: VisualSegment) -> Done[PatchSetRef]:
        ref = draw_visual(job.prepared, segment, job.values, job.workdir, in_memory=True)
        self._in_memory.append(ref.uri)
        return Done(ref)

    def lipsync(self, job: RecipientJob, segment: VoiceSegment, voice: Pending[AudioInsert]) -> Done[PatchSetRef | None]:
        return Done(lipsync_line(job.prepared, segment, voice.result(), job.workdir))

    def compose(self, job: RecipientJob, voices: list[Pending[AudioInsert]], patch_sets: list[PatchSetRef]) -> dict[str, object]:
        # queued behind the lines on the one speaker thread: the render's audio waits for all of them
        spoken = self._speaker.submit(lambda: [v.result() for v in voices])
        return compose(job.prepared, spoken, patch_sets, job.output_uri)

    def publish(
        self, job: RecipientJob, inserts: list[AudioInsert], patch_sets: list[PatchSetRef], render: dict[str, object]
    ) -> RecipientResult:
        return publish(job.prepared, job.key, job.values, inserts, patch_sets, render, job.output_uri, job.started)


def personalize(template: Template | str, data: dict[str, object], out: str | None = None) -> RecipientResult:
    """One recipient, start to end, without Prefect: ``run_recipient`` with every step in this process."""
    keep_freed_memory()
    check_configured_backend()
    if isinstance(template, str):
        template = load_template(template)
    checked_values(template, data)  # bad input fails before any expensive work
    prepared = prepare_template(template)
    job = plan_recipient(template, prepared, data, out)
    with InProcessSteps() as steps:
        return run_recipient(job, steps)


def result_summary(result: RecipientResult) -> str:
    return json.dumps({"output": result.output_uri, "key": result.recipient_key, "seconds": result.seconds})
