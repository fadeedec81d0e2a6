"""Call transcription bridge: live call legs to timestamped text."""

__version__ = "0.1.0"
