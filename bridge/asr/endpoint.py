"""Where and how to reach one ASR server (a backend of :class:`bridge.asr.pool.AsrPool`)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bridge.core.step_clock import StepClock
from bridge.model_files import ModelAudio


@dataclass(frozen=True, slots=True)
class AsrEndpoint:
    """Where and how to reach the realtime server."""

    url: str  # ws://host:port/v1/realtime
    model: str
    # "vllm": vLLM's realtime session (Voxtral's step clock); "openai": OpenAI's transcription
    # session (docs/asr-dialects.md).
    dialect: str = "vllm"
    api_key: str | None = None
    delay_ms: int = 480
    language: str | None = None  # hint for engines that use it; Voxtral detects the language
    # OpenAI dialect: context for the transcription model (names, words of the trade).
    prompt: str | None = None
    open_timeout_s: float = 10.0
    # No message for this long while audio is outstanding: the session is stuck; reconnect.
    stall_timeout_s: float = 30.0
    # Keep retrying this long without a working connection, then give up (None: forever).
    give_up_after_s: float | None = None
    # Connections in a row that stalled (no event for stall_timeout_s while audio was
    # outstanding) without a single step: then the server is stuck for this leg; give up.
    max_stalled_connections: int = 3
    # Legs the server takes at once (None: not known); new calls are refused while this many
    # are live (SIP 503, WHIP 503), before the server would have to refuse their sessions.
    max_legs: int | None = None
    # The served model's files as read (asr.model_dir, bridge/model_files.py); None: Voxtral
    # Mini 4B Realtime's values at ``delay_ms``.
    model_files: ModelAudio | None = None

    def __post_init__(self) -> None:
        if self.model_files and self.clock.transcription_delay_ms != self.delay_ms:
            raise ValueError("delay_ms differs from the model files' transcription delay")

    @property
    def session_url(self) -> str:
        """The URL a session connects to: the OpenAI dialect asks for a transcription session
        with ``?intent=transcription`` (kept as given when the URL already names an intent)."""
        if self.dialect != "openai":
            return self.url
        parts = urlsplit(self.url)
        query = parse_qsl(parts.query)
        if any(key == "intent" for key, _ in query):
            return self.url
        return urlunsplit(parts._replace(query=urlencode([*query, ("intent", "transcription")])))

    @property
    def clock(self) -> StepClock:
        """When the server steps: what word times and the step lag are computed with."""
        return self.model_files.clock() if self.model_files else StepClock(self.delay_ms)
