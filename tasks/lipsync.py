"""Lip-sync one voice window: inline, or as a flow run of the ``wav2lip`` deployment on a GPU pool.

The remote path passes only URIs: the child run reads the prepared template's JSON and the fitted
WAV from shared storage and writes its patch set and a small JSON reference beside the
recipient's other scratch files, which the parent then reads.
"""

from __future__ import annotations

from prefect import task
from prefect.deployments import run_deployment

from loom import pipeline, storage
from loom.edits import AudioInsert, PatchSetRef
from loom.prepared import PreparedTemplate
from loom.provider_slots import GPU_LIPSYNC, provider_slot
from loom.template import VoiceSegment
from tasks.retries import network_retry_options

WAV2LIP_DEPLOYMENT = "wav2lip/wav2lip"
# A GPU run waits for a worker (polls every 10 s) and maybe a cold machine: generous, but bounded.
WAV2LIP_TIMEOUT_S = 3600


def patch_ref_uri(workdir: str, segment_id: str) -> str:
    return storage.join(workdir, f"lipsync-{segment_id}.json")


def prepared_uri(prepared: PreparedTemplate) -> str:
    return storage.join(prepared.root, "prepared.json")


@task(name="lipsync-line")
def lipsync_line(prepared: PreparedTemplate, segment: VoiceSegment, insert: AudioInsert, workdir: str) -> PatchSetRef | None:
    """Mouth patches for the window in this process (``pipeline.lipsync_line``); None when skipped."""
    ref = pipeline.lipsync_line(prepared, segment, insert, workdir)
    if ref is not None:
        storage.write_text(patch_ref_uri(workdir, segment.id), ref.model_dump_json())
    return ref


@task(name="lipsync-on-gpu-pool", **network_retry_options())
def lipsync_on_pool(prepared: PreparedTemplate, segment: VoiceSegment, insert: AudioInsert, workdir: str) -> PatchSetRef | None:
    """Run the ``wav2lip`` deployment for this window as a child flow run and read back its patches."""
    if not pipeline.lipsync_wanted(prepared, segment):
        return None  # the engine's rule: no child run for a window that is not lip-synced
    ref_uri = patch_ref_uri(workdir, segment.id)
    storage.remove(ref_uri)  # a stale reference from an earlier try must not pass for this run's
    with provider_slot(GPU_LIPSYNC):  # the GPU pool's cards, counted across every run (``gpu-lipsync``)
        run = run_deployment(
            WAV2LIP_DEPLOYMENT,
            parameters={
                "prepared_uri": prepared_uri(prepared),
                "segment_id": segment.id,
                "insert": insert.model_dump(mode="json"),
                "workdir": workdir,
            },
            timeout=WAV2LIP_TIMEOUT_S,
            poll_interval=2,
            as_subflow=True,
        )
    state = run.state
    if state is None or not state.is_completed():
        # run_deployment never raises for a failed child: say which run failed and how.
        name = state.name if state is not None else "unknown"
        message = (state.message or "") if state is not None else ""
        raise RuntimeError(f"wav2lip run {run.name} ({run.id}) ended {name}: {message}".strip())
    if not storage.exists(ref_uri):
        return None  # the child skipped lip-sync (no checkpoint or no face): it logged why
    return PatchSetRef.model_validate_json(storage.read_bytes(ref_uri))
