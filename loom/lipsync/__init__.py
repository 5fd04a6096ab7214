"""Lip-sync: the Wav2Lip model and its audio front-end, face boxes, blending, Sync Labs, and the
backends found through the ``better_loom.lipsync`` entry points (``loom.plugins``)."""
