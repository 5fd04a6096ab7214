"""Voice: speak each line (ElevenLabs with the presenter's cloned voice, or offline espeak-ng),
cache it, and fit it into its window of the recording.

Entry points: ``speech.synthesize_line``, ``speech.speech_cache_key``, ``fit.fit_line_to_window``,
``cloning.clone_voice``. Configuration is ``config.VoiceConfig`` (from ``ELEVENLABS_*`` by default).
"""
