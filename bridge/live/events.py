"""The live API's events: their types, their JSON shapes, and which subscriber wants which.

Every event is one JSON object, ``{"seq", "type", "call_id", "at_ms", ...}`` plus one payload
field named after what it is about (``call``, ``leg``, ``segment``, ``gap``, ``health``,
``dtmf``); the payload builders below are the one place those shapes are written.  Segment, gap
and leg fields are the export's (``bridge.export``), so a client reads the live API and an export
with the same code.  An event is serialised once, when it is published (:func:`encode`): its
``text`` is shared by every subscriber.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bridge.core.types import CallInfo, Gap, LegInfo, Segment
from bridge.export import gap_json, leg_json, segment_json

EVENT_TYPES = (
    "call.started",
    "call.ended",
    "leg.started",
    "leg.ended",
    "segment.partial",
    "segment.final",
    "gap",
    "dtmf",
    "asr.health",
    "resync",
)


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One published event.  ``text`` is its JSON, made once and sent to every client."""

    seq: int
    type: str
    call_id: str
    agent: str | None
    segment_key: tuple[str, int] | None  # (leg_id, seq) of a segment event, else None
    text: str

    @property
    def partial_key(self) -> tuple[str, int] | None:
        return self.segment_key if self.type == "segment.partial" else None

    @property
    def data(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.text)
        return value


@dataclass(frozen=True, slots=True)
class LiveFilter:
    """Which events a subscriber wants: one call, one agent's calls, or (both None) all."""

    call_id: str | None = None
    agent: str | None = None

    def matches(self, event: LiveEvent) -> bool:
        if event.type == "resync":
            return True
        if self.call_id is not None and event.call_id != self.call_id:
            return False
        return self.agent is None or event.agent == self.agent


def encode(seq: int, kind: str, call_id: str, at_ms: int, payload: dict[str, Any]) -> str:
    """An event's JSON text: the common fields, then its payload."""
    body = {"seq": seq, "type": kind, "call_id": call_id, "at_ms": at_ms}
    body.update(payload)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def resync_text(seq: int, resume_from: int, ring_size: int) -> str:
    """The ``resync`` event: the client's resume point is no longer (or never was) in the ring."""
    return json.dumps(
        {
            "seq": seq,
            "type": "resync",
            "resume_from": resume_from,
            "detail": (
                f"events after seq {resume_from} are no longer kept (the hub keeps the last "
                f"{ring_size}); re-read the calls over REST and continue from seq {seq}"
            ),
        }
    )


def leg_fields(leg: LegInfo, call_started_at_ms: int) -> dict[str, Any]:
    """A leg as the export writes it, its offset counted from the call's start."""
    return leg_json(leg, max(0, leg.started_at_ms - call_started_at_ms))


def call_started(call: CallInfo, agent: str | None) -> dict[str, Any]:
    return {
        "call": {
            "id": call.call_id,
            "source": call.source.value,
            "title": call.title,
            "agent": agent,
            "started_at_ms": call.started_at_ms,
        }
    }


def call_ended(
    call_id: str, cause: str, ended_at_ms: int, started_at_ms: int | None
) -> dict[str, Any]:
    return {
        "call": {
            "id": call_id,
            "ended_at_ms": ended_at_ms,
            "end_cause": cause,
            "duration_ms": None if started_at_ms is None else ended_at_ms - started_at_ms,
        }
    }


def leg_started(leg: LegInfo, call_started_at_ms: int) -> dict[str, Any]:
    return {"leg": leg_fields(leg, call_started_at_ms)}


def leg_ended(leg_id: str, duration_ms: int) -> dict[str, Any]:
    return {"leg": {"id": leg_id, "duration_ms": duration_ms}}


def segment(leg: LegInfo, item: Segment) -> dict[str, Any]:
    return {"segment": segment_json(item, leg.role.value)}


def gap(leg: LegInfo, item: Gap) -> dict[str, Any]:
    return {"gap": {**gap_json(item), "role": leg.role.value}}


def asr_health(leg: LegInfo, detail: str, errors: int) -> dict[str, Any]:
    return {"health": {"leg_id": leg.leg_id, "error": detail, "errors": errors}}


def dtmf(leg: LegInfo, digit: str, at_ms: int, duration_ms: int) -> dict[str, Any]:
    return {
        "dtmf": {"leg_id": leg.leg_id, "digit": digit, "at_ms": at_ms, "duration_ms": duration_ms}
    }
