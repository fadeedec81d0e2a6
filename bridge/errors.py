"""The bridge's one error hierarchy.

::

    BridgeError
    ├── ConfigError                 bad config file, env variable or CLI option; names key and fix
    ├── Forbidden                   a token's holder may not do this (an agent acting for another)
    ├── MediaError                  audio we cannot read: missing/corrupt file, unsupported format
    ├── ProtocolError               raised by ``bridge.core`` only
    │   ├── RemoteProtocolError     the peer broke the protocol (``status_hint`` for the reply)
    │   │   ├── AsrProtocolError    the ASR server sent something the realtime protocol forbids
    │   │   └── BadNumber           a number not ASCII digits, too long or out of range (also a
    │   │                           ValueError; ``bridge.core.numbers.parse_uint``)
    │   └── InvalidState            core called in the wrong state: our bug (also AssertionError)
    ├── AsrServerError              an ``error`` event from the ASR server; ``code``, ``retryable``
    ├── UploadRefused               an upload not taken now; ``reason``, ``retry_after_s``
    └── TransportError              raised by the I/O adapters; ``retryable``
        ├── AsrConnectionError      cannot reach / lost the ASR server
        └── StorageError            SQLite failed

*Local* errors (``InvalidState``) are bugs in the bridge; *remote* errors are the peer's fault
and carry what to tell it. ``retryable`` says whether trying again can help: the leg keeps its
audio buffered while a retryable error lasts and records a gap when it gives up.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base class of every error the bridge raises on purpose."""

    retryable: bool = False


class ConfigError(BridgeError):
    """A configuration problem. ``problems`` lists every one found, each naming key and fix."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class Forbidden(BridgeError):
    """What a token's holder asked for is not theirs to do (``bridge.auth``; HTTP answers 403)."""


class MediaError(BridgeError):
    """Audio the bridge cannot read: a missing, corrupt or unsupported file or stream."""


class ProtocolError(BridgeError):
    """Raised by the sans-I/O core."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol. ``status_hint`` is the status to answer with, if any."""

    def __init__(self, message: str, *, status_hint: int | None = None) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class AsrProtocolError(RemoteProtocolError):
    """The ASR server sent an event the realtime protocol does not allow in this state."""

    retryable = True


class InvalidState(ProtocolError, AssertionError):
    """The core was driven in a state that does not allow the call: a bug in the bridge."""


# vLLM /v1/realtime error codes (vllm-realtime.md §1.4) -> (retryable, what the operator should do).
# invalid_json / unknown_event / invalid_event / invalid_audio / model_not_validated are bugs
# on our side: the bridge never sends those on purpose.  processing_error is an engine failure.
ASR_ERROR_ACTIONS: dict[str, tuple[bool, str]] = {
    "model_not_found": (
        False,
        "the server does not serve this model: pass the served model name with --model "
        "(see `bridge check`)",
    ),
    "model_not_validated": (False, "session.update was refused earlier; check --model"),
    "invalid_event": (False, "the bridge sent an event the server rejected (bridge bug)"),
    "invalid_json": (False, "the bridge sent invalid JSON (bridge bug)"),
    "unknown_event": (False, "the server does not know an event the bridge sent (version skew?)"),
    "invalid_audio": (False, "the server rejected an audio chunk (bridge bug)"),
    "processing_error": (True, "the ASR engine failed; retrying on a new session"),
    "buffer_full": (True, "the server's audio queue is full; retrying after a pause"),
    "idle_timeout": (True, "the server closed an idle session; reopening"),
    # The embedded CPU engine (bridge.engine): every leg it can keep in real time is taken.
    "capacity_exceeded": (True, "the speech engine has no free leg; retrying later"),
}


class AsrServerError(BridgeError):
    """An ``error`` event from the ASR server."""

    def __init__(self, message: str, code: str | None) -> None:
        self.code = code
        self.retryable, self.action = ASR_ERROR_ACTIONS.get(
            code or "", (True, "unexpected server error; retrying")
        )
        super().__init__(f"ASR server error {code or 'without code'}: {message} ({self.action})")


class UploadRefused(BridgeError):
    """An uploaded recording the bridge does not take now.  ``reason``: ``busy`` (uploads are
    full, or the bridge is stopping), ``too-many-uploads`` (the token's own limit) or
    ``over-capacity`` (more channels than uploads may ever use); ``retry_after_s``: when trying
    again later can help."""

    def __init__(self, message: str, *, reason: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.retryable = retry_after_s is not None


class TransportError(BridgeError):
    """I/O failed; ``retryable`` says whether trying again can help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class AsrConnectionError(TransportError):
    """The ASR server cannot be reached, refused us, or dropped the connection."""


class StorageError(TransportError):
    """The transcript store failed."""
