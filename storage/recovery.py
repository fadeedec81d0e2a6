"""Recovery at start-up: ending the calls and legs a process that died left active.

:func:`end_dead_calls` reads what each call stored last, plans the statements that end it
(:func:`plan_dead_calls`, pure) and runs them in one transaction; :func:`end_active_calls` is the
blunt older form (every active call ends now, leg durations unknown).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

from bridge.core.types import CallId, Gap, LegId, LegSource

from .records import MEDIA_DURATION_EVENT, DeadCall
from .statements import INSERT_GAP, Params, Statement, gap_params
from .writer import Writer

Read: TypeAlias = Callable[[str, tuple[Any, ...]], Awaitable[list[sqlite3.Row]]]

# A process that died left calls and legs "active": close them (duration unknown: NULL).
_END_ACTIVE_LEGS = """
UPDATE legs SET ended_at_ms = :ended_at_ms WHERE ended_at_ms IS NULL
"""
_END_ACTIVE_CALLS = """
UPDATE calls SET ended_at_ms = :ended_at_ms, end_cause = :cause WHERE ended_at_ms IS NULL
"""

# Per active call: its last stored activity, its latest MEDIA_DURATION_EVENT detail, its start.
_DEAD_CALLS = """
SELECT c.call_id, max(c.started_at_ms,
    coalesce((SELECT max(max(l.started_at_ms, coalesce(l.ended_at_ms, 0)))
              FROM legs AS l WHERE l.call_id = c.call_id), 0),
    coalesce((SELECT max(s.updated_at_ms) FROM segments AS s WHERE s.call_id = c.call_id), 0),
    coalesce((SELECT max(e.at_ms) FROM events AS e
              WHERE e.call_id = c.call_id AND e.leg_id IS NULL), 0)),
  (SELECT e.detail FROM events AS e WHERE e.call_id = c.call_id AND e.leg_id IS NULL
   AND e.kind = ? ORDER BY e.id DESC LIMIT 1), c.started_at_ms
FROM calls AS c WHERE c.ended_at_ms IS NULL
"""

# Per open leg of an active call: its call, id, source, start and the leg clock it reached.
_OPEN_LEGS = """
SELECT l.call_id, l.leg_id, l.source, l.started_at_ms, max(
    coalesce((SELECT max(s.end_ms) FROM segments AS s WHERE s.leg_id = l.leg_id), 0),
    coalesce((SELECT max(g.start_ms + g.duration_ms) FROM gaps AS g
              WHERE g.leg_id = l.leg_id), 0),
    coalesce((SELECT max(e.at_ms) FROM events AS e WHERE e.leg_id = l.leg_id), 0))
FROM legs AS l JOIN calls AS c ON c.call_id = l.call_id
WHERE c.ended_at_ms IS NULL AND l.ended_at_ms IS NULL
"""

_END_DEAD_LEG = """
UPDATE legs SET ended_at_ms = :ended_at_ms, duration_ms = :duration_ms
WHERE leg_id = :leg_id AND ended_at_ms IS NULL
"""

_END_DEAD_CALL = """
UPDATE calls SET ended_at_ms = :ended_at_ms, end_cause = :cause
WHERE call_id = :call_id AND ended_at_ms IS NULL
"""


async def end_active_calls(read: Read, writer: Writer, *, ended_at_ms: int, cause: str) -> int:
    """Mark every call (and leg) still active as ended; return how many calls were."""
    rows = await read("SELECT count(*) FROM calls WHERE ended_at_ms IS NULL", ())
    params: Params = {"ended_at_ms": ended_at_ms, "cause": cause}
    await writer.submit("end active legs", _END_ACTIVE_LEGS, params, must_change=False)
    await writer.submit("end active calls", _END_ACTIVE_CALLS, params, must_change=False)
    return int(rows[0][0])


async def end_dead_calls(read: Read, writer: Writer, *, cause: str, now_ms: int) -> list[DeadCall]:
    """End every call still active, in one transaction (``TranscriptStore.end_dead_calls``)."""
    calls = await read(_DEAD_CALLS, (MEDIA_DURATION_EVENT,))
    if not calls:
        return []
    legs = await read(_OPEN_LEGS, ())
    statements, dead = plan_dead_calls(calls, legs, cause=cause, now_ms=now_ms)
    await writer.submit_all(statements)
    return dead


def plan_dead_calls(
    calls: Sequence[Sequence[Any]],
    legs: Sequence[Sequence[Any]],
    *,
    cause: str,
    now_ms: int,
) -> tuple[list[Statement], list[DeadCall]]:
    """The statements that end the active ``calls`` (rows of ``_DEAD_CALLS``) and their open
    ``legs`` (rows of ``_OPEN_LEGS``), and the calls as they will be ended.

    Each call ends at its last stored activity, or, for live (not file) legs, their start plus
    the leg clock they reached if later (never after ``now_ms``, never before the call started).
    Its open legs are closed with the leg clock they reached; where the call has a
    :data:`MEDIA_DURATION_EVENT` longer than that, the rest is a gap and the leg lasts the audio.
    """
    open_legs: dict[str, list[tuple[str, int]]] = {}
    realtime_end: dict[str, int] = {}  # live legs: their clock runs with the wall clock
    for row in legs:
        call_id, reached_ms = str(row[0]), max(int(row[4]), 0)
        open_legs.setdefault(call_id, []).append((str(row[1]), reached_ms))
        if row[2] != LegSource.FILE.value:  # a file may be fed faster than real time
            end = int(row[3]) + reached_ms
            realtime_end[call_id] = max(realtime_end.get(call_id, 0), end)
    statements: list[Statement] = []
    dead: list[DeadCall] = []
    for row in calls:
        call_id = str(row[0])
        last_ms = max(int(row[1]), realtime_end.get(call_id, 0))
        ended_at_ms = max(min(last_ms, now_ms), int(row[3]))
        audio_ms = _duration_ms(row[2])
        untranscribed = 0
        for leg_id, reached_ms in open_legs.get(call_id, []):
            duration_ms = reached_ms
            if audio_ms is not None and audio_ms > reached_ms:
                duration_ms = audio_ms
                untranscribed += audio_ms - reached_ms
                gap = Gap(
                    CallId(call_id),
                    LegId(leg_id),
                    reached_ms,
                    audio_ms - reached_ms,
                    f"not transcribed: the bridge stopped ({cause})",
                )
                what = f"gap on leg {leg_id} of dead call {call_id}"
                statements.append((what, INSERT_GAP, gap_params(gap)))
            statements.append(
                (
                    f"end leg {leg_id} of dead call {call_id}",
                    _END_DEAD_LEG,
                    {"leg_id": leg_id, "ended_at_ms": ended_at_ms, "duration_ms": duration_ms},
                )
            )
        statements.append(
            (
                f"end dead call {call_id}",
                _END_DEAD_CALL,
                {"call_id": call_id, "ended_at_ms": ended_at_ms, "cause": cause},
            )
        )
        legs_closed = len(open_legs.get(call_id, []))
        dead.append(DeadCall(CallId(call_id), ended_at_ms, legs_closed, untranscribed))
    return statements, dead


def _duration_ms(detail: object) -> int | None:
    """``duration_ms=N`` (among space-separated ``key=value`` pairs) from an event detail."""
    if not isinstance(detail, str):
        return None
    for pair in detail.split():
        key, _, value = pair.partition("=")
        if key == "duration_ms" and value.isascii() and value.isdigit() and len(value) <= 12:
            return int(value)
    return None
