"""The Wav2Lip flow that the ``wav2lip`` deployment serves on the GPU pool.

A recipient run hands it URIs only: the prepared template's JSON, the fitted WAV (inside the
``insert``) and the recipient's scratch folder. It runs the same ``lipsync-line`` task the recipient
flow runs inline, which writes the patch set and a JSON reference to it there.
"""

from __future__ import annotations

from prefect import flow

from blocks import apply_configured_blocks
from loom import storage
from loom.edits import AudioInsert, PatchSetRef
from loom.errors import InputError
from loom.prepared import PreparedTemplate
from tasks.lipsync import lipsync_line, patch_ref_uri


@flow(name="wav2lip", log_prints=True)
def wav2lip(prepared_uri: str, segment_id: str, insert: AudioInsert, workdir: str) -> str | None:
    """Mouth patches for one voice window; returns the URI of their JSON reference (None if skipped)."""
    apply_configured_blocks()  # deployed runs: blocks named in the environment configure the engine
    prepared = PreparedTemplate.model_validate_json(storage.read_bytes(prepared_uri))
    segment = next((s for s in prepared.template.voice_segments if s.id == segment_id), None)
    if segment is None:
        raise InputError("segment_id", f"{segment_id!r} is not a voice segment of template {prepared.template.id}", "pass one of its ids")
    ref: PatchSetRef | None = lipsync_line(prepared, segment, insert, workdir)
    return patch_ref_uri(workdir, segment_id) if ref is not None else None
