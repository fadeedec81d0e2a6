"""The values the transcript store returns: calls, legs and whole transcripts (frozen, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.types import CallId, Gap, LegEvent, LegId, LegRole, LegSource, Segment

# A call-level event (leg_id NULL) whose detail ``duration_ms=N`` says how long the call's audio
# is (an uploaded file): if the process dies, the rest of each leg is stored as a gap.
MEDIA_DURATION_EVENT = "media.duration"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A call as listed: no transcript.  ``duration_ms`` (wall clock, start to end) is ``None``
    while the call is active; ``audio_ms`` is its longest ended leg's audio (a file transcribed
    ``--fast`` has minutes of audio in seconds of wall clock), ``None`` before a leg ends."""

    call_id: CallId
    source: LegSource
    title: str
    started_at_ms: int
    ended_at_ms: int | None
    end_cause: str | None
    leg_count: int
    duration_ms: int | None
    active: bool
    agent: str | None = None  # the agent the call belongs to (schema 2); None: supervisors only
    audio_ms: int | None = None


@dataclass(frozen=True, slots=True)
class DeadCall:
    """A call a dead process left active, as :meth:`TranscriptStore.end_dead_calls` ended it."""

    call_id: CallId
    ended_at_ms: int  # its last stored activity
    legs_closed: int
    untranscribed_ms: int  # audio stored as gaps (known only where the call said how long)


@dataclass(frozen=True, slots=True)
class CallPage:
    """One page of :meth:`TranscriptStore.search_calls`: the calls and how many match in all."""

    calls: list[CallRecord]
    total: int


@dataclass(frozen=True, slots=True)
class LegRecord:
    """A stored leg.  ``ended_at_ms`` and ``duration_ms`` are ``None`` while it is active."""

    call_id: CallId
    leg_id: LegId
    role: LegRole
    label: str
    codec: str
    source: LegSource
    started_at_ms: int
    ended_at_ms: int | None
    duration_ms: int | None

    @property
    def active(self) -> bool:
        return self.ended_at_ms is None


@dataclass(frozen=True, slots=True)
class CallTranscript:
    """Everything stored about one call.

    ``segments`` are ordered by start time, then leg id, then seq, each with its words; ``gaps``
    by start time, then leg id; ``events`` in the order they were recorded (their ``at_ms`` mixes
    leg clocks and the wall clock, so it cannot order them).
    """

    call: CallRecord
    legs: tuple[LegRecord, ...]
    segments: tuple[Segment, ...]
    gaps: tuple[Gap, ...]
    events: tuple[LegEvent, ...]
