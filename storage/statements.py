"""The SQL the writer runs, and the parameters it binds for each kind of item (no I/O).

A segment upsert never turns a final row back into a partial, and a segment's words are replaced
only when its row is (:data:`UPSERT_SEGMENT`, :data:`DELETE_WORDS`, :data:`INSERT_WORD`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

from bridge.core.types import CallInfo, Gap, LegEvent, LegInfo, Segment

Params: TypeAlias = dict[str, str | int | None]
Statement: TypeAlias = tuple[str, str, Params]  # (what it does, for errors; sql; params)

ADD_CALL = """
INSERT INTO calls (call_id, source, title, started_at_ms, agent)
VALUES (:call_id, :source, :title, :started_at_ms, :agent)
ON CONFLICT (call_id) DO UPDATE SET source = excluded.source, title = excluded.title,
    agent = coalesce(excluded.agent, calls.agent)
"""

# Re-adding a leg updates its description; moving it to another call changes no row (an error).
ADD_LEG = """
INSERT INTO legs (leg_id, call_id, role, label, codec, source, started_at_ms)
VALUES (:leg_id, :call_id, :role, :label, :codec, :source, :started_at_ms)
ON CONFLICT (leg_id) DO UPDATE SET
    role = excluded.role, label = excluded.label, codec = excluded.codec, source = excluded.source
WHERE legs.call_id = excluded.call_id
"""

END_LEG = """
UPDATE legs SET ended_at_ms = :ended_at_ms, duration_ms = :duration_ms WHERE leg_id = :leg_id
"""

END_CALL = """
UPDATE calls SET ended_at_ms = :ended_at_ms, end_cause = :cause WHERE call_id = :call_id
"""

# Idempotent by (leg_id, seq); a final row is never replaced by a partial revision (a partial
# replayed after the final must not un-finalise it).  A final may replace a final (a replay).
UPSERT_SEGMENT = """
INSERT INTO segments (leg_id, seq, call_id, start_ms, end_ms, text, final, updated_at_ms, timing)
VALUES (:leg_id, :seq, :call_id, :start_ms, :end_ms, :text, :final, :updated_at_ms, :timing)
ON CONFLICT (leg_id, seq) DO UPDATE SET
    call_id = excluded.call_id, start_ms = excluded.start_ms, end_ms = excluded.end_ms,
    text = excluded.text, final = excluded.final, updated_at_ms = excluded.updated_at_ms,
    timing = excluded.timing
WHERE excluded.final = 1 OR segments.final = 0
"""

# The same guard as the upsert's WHERE, so words change exactly when their segment row did.
_KEEPS_WORDS = """
    :final = 0 AND EXISTS (SELECT 1 FROM segments AS s
                           WHERE s.leg_id = :leg_id AND s.seq = :seq AND s.final = 1)
"""

DELETE_WORDS = f"""
DELETE FROM words WHERE leg_id = :leg_id AND seq = :seq AND NOT ({_KEEPS_WORDS})
"""

INSERT_WORD = f"""
INSERT INTO words (leg_id, seq, idx, text, start_ms, end_ms, timing)
SELECT :leg_id, :seq, :idx, :text, :start_ms, :end_ms, :timing WHERE NOT ({_KEEPS_WORDS})
"""

INSERT_GAP = """
INSERT INTO gaps (call_id, leg_id, start_ms, duration_ms, reason)
VALUES (:call_id, :leg_id, :start_ms, :duration_ms, :reason)
"""

INSERT_EVENT = """
INSERT INTO events (call_id, leg_id, at_ms, kind, detail)
VALUES (:call_id, :leg_id, :at_ms, :kind, :detail)
"""


def call_params(call: CallInfo) -> Params:
    return {
        "call_id": call.call_id,
        "source": call.source.value,
        "title": call.title,
        "started_at_ms": call.started_at_ms,
        "agent": call.agent,
    }


def leg_params(leg: LegInfo) -> Params:
    return {
        "leg_id": leg.leg_id,
        "call_id": leg.call_id,
        "role": leg.role.value,
        "label": leg.label,
        "codec": leg.codec,
        "source": leg.source.value,
        "started_at_ms": leg.started_at_ms,
    }


def gap_params(gap: Gap) -> Params:
    return {
        "call_id": gap.call_id,
        "leg_id": gap.leg_id,
        "start_ms": gap.start_ms,
        "duration_ms": gap.duration_ms,
        "reason": gap.reason,
    }


def event_params(event: LegEvent) -> Params:
    return {
        "call_id": event.call_id,
        "leg_id": event.leg_id,
        "at_ms": event.at_ms,
        "kind": event.kind,
        "detail": event.detail,
    }


def segment_params(
    segments: Iterable[Segment], now_ms: int
) -> tuple[list[Params], list[Params], list[Params]]:
    """For :data:`UPSERT_SEGMENT`, :data:`DELETE_WORDS` and :data:`INSERT_WORD`: one revision per
    key, so the words of two revisions never collide: the later one, unless that would put a
    partial over a final."""
    chosen: dict[tuple[str, int], Segment] = {}
    for segment in segments:
        key = (segment.leg_id, segment.seq)
        queued = chosen.get(key)
        if queued is None or segment.final or not queued.final:
            chosen[key] = segment
    rows: list[Params] = []
    keys: list[Params] = []
    words: list[Params] = []
    for s in chosen.values():
        final = 1 if s.final else 0
        key_params: Params = {"leg_id": s.leg_id, "seq": s.seq, "final": final}
        keys.append(key_params)
        rows.append(
            key_params
            | {
                "call_id": s.call_id,
                "start_ms": s.start_ms,
                "end_ms": s.end_ms,
                "text": s.text,
                "updated_at_ms": now_ms,
                "timing": s.timing.value,
            }
        )
        words.extend(
            key_params
            | {
                "idx": idx,
                "text": w.text,
                "start_ms": w.start_ms,
                "end_ms": w.end_ms,
                "timing": w.timing.value,
            }
            for idx, w in enumerate(s.words)
        )
    return rows, keys, words
