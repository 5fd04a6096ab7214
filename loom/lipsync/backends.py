"""The built-in lip-sync backends, registered under ``better_loom.lipsync`` like any plugin.

Each follows the plugin contract (``sync(video_path, audio_path, output_path, **kwargs)``) and
adds the faster ways the engine prefers when a backend offers them: ``segment_patches`` (mouth
patches for a voice window straight from the prepared template) and ``confined = True`` (its
``sync`` already changes nothing but the lower face). The engine is imported inside the methods:
importing torch costs about a second that a recipient without lip-sync should not pay.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from loom import storage
from loom.edits import AudioInsert, PatchSetRef
from loom.lipsync.synclabs import SyncLabsClient, reachable_url, synclabs_segment
from loom.prepared import PreparedTemplate
from loom.template import VoiceSegment


class Wav2LipBackend:
    """The local Wav2Lip model (``LOOM_WAV2LIP_CHECKPOINT``)."""

    confined = True

    def sync(self, video_path: str, audio_path: str, output_path: str, **kwargs: object) -> None:
        from loom.lipsync.engine import lipsync_clip

        checkpoint = kwargs.get("checkpoint")
        lipsync_clip(video_path, audio_path, output_path, checkpoint=str(checkpoint) if checkpoint else None)

    def segment_patches(self, prepared: PreparedTemplate, segment: VoiceSegment, insert: AudioInsert, out_uri: str) -> PatchSetRef | None:
        from loom.lipsync.engine import lipsync_segment

        return lipsync_segment(prepared, segment, insert, out_uri)


class SyncLabsBackend:
    """Sync Labs' hosted API (``SYNC_API_KEY``): inputs are sent as URLs it can fetch."""

    def sync(self, video_path: str, audio_path: str, output_path: str, **kwargs: object) -> None:
        client = SyncLabsClient()
        work = storage.join(storage.home(), "work", "synclabs", f"clip-{int(time.time() * 1000)}")
        try:
            video_uri = storage.join(work, f"video{Path(video_path).suffix}")
            audio_uri = storage.join(work, f"audio{Path(audio_path).suffix}")
            storage.write_bytes(video_uri, Path(video_path).read_bytes())
            storage.write_bytes(audio_uri, Path(audio_path).read_bytes())
            with tempfile.TemporaryDirectory(prefix="loom-synclabs-") as tmp:
                result = client.lipsync(reachable_url(video_uri), reachable_url(audio_uri), Path(tmp) / "result.mp4")
                Path(output_path).write_bytes(result.read_bytes())
        finally:
            storage.remove(work)
            client.close()

    def segment_patches(self, prepared: PreparedTemplate, segment: VoiceSegment, insert: AudioInsert, out_uri: str) -> PatchSetRef | None:
        return synclabs_segment(prepared, segment, insert, out_uri)
