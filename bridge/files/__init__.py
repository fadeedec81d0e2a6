"""Audio files: ``reader`` opens one (plain WAV and raw G.711/PCM16 as they are, anything else
through FFmpeg) and streams its blocks off the event loop; ``decode`` is the FFmpeg side (PyAV).
``bridge transcribe`` and uploads read their recordings here."""
