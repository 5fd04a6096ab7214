"""The once-per-process "no checkpoint" warning, kept apart from the engine so that deciding to
skip lip-sync never imports torch (~1 s of a recipient's start-up)."""

from __future__ import annotations

import logging
import threading

NO_CHECKPOINT = (
    "lip-sync skipped: no Wav2Lip checkpoint is configured (set LOOM_WAV2LIP_CHECKPOINT or the wav2lip block "
    "to wav2lip.pth / wav2lip_gan.pth); the new voice is used over the original mouth"
)

_lock = threading.Lock()
_warned = False


def warn_no_checkpoint() -> None:
    """Log ``NO_CHECKPOINT`` once per process, however many recipients skip."""
    global _warned
    with _lock:
        if _warned:
            return
        _warned = True
    logging.getLogger("loom.lipsync").warning(NO_CHECKPOINT)


def forget_warning() -> None:
    """Warn again next time (settings changed)."""
    global _warned
    with _lock:
        _warned = False
